"""Human review over HTTP: annotation queues (HoneyHive ``/v1/queues``) and their items.

Queues live in dpdb in the caller's project (``queues:read`` to read, ``queues:write`` to
configure them, add or remove events and assign items). Reviewers (``annotations:write``)
claim items (``POST /v1/queues/{id}/items/next``), skip them, and record scores
(``POST /v1/queues/{id}/items/{event_id}/scores``). A score is feedback on the event: it is
published as an update of the event's ``feedback`` before the item is marked completed, so
an answer of 200 means the feedback is durable in the pipeline and will show in exports.

Who may act on an item: holders of ``queues:write`` always; otherwise a reviewer of the
queue (any ``annotations:write`` holder when the queue names no reviewers) on an item that
is theirs or unassigned.

Rule-filled queues are filled by a :class:`~apiary.dataplane.review.filler.QueueFiller` this
router's lifespan runs in every replica, and also before items are listed or claimed (when the last
fill is older than ``APIARY_REVIEW_FILL_INTERVAL_S``) and on demand
(``POST /v1/queues/{id}/fill``).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query
from sqlalchemy.orm import Session
from starlette.requests import Request

from apiary.dataplane.auth import Permission, Principal
from apiary.dataplane.db import AnnotationItem, AnnotationQueue
from apiary.dataplane.events.publish import publish_patch
from apiary.dataplane.events.schemas import PathId
from apiary.dataplane.replica.context import DataPlaneContext, context_of
from apiary.dataplane.replica.routing import (
    ERRORS,
    DbPage,
    in_transaction,
    iso,
    owner_of,
    project_principal,
)
from apiary.dataplane.review import items as item_ops
from apiary.dataplane.review import queues as queue_ops
from apiary.dataplane.review.filler import QueueFiller
from apiary.dataplane.review.schemas import (
    AddItems,
    Criterion,
    FillResult,
    ItemOut,
    ItemRemoved,
    ItemsAdded,
    ItemsResponse,
    ItemUpdate,
    NextItem,
    QueueCreate,
    QueueDeleted,
    QueueFilters,
    QueueOut,
    QueuesResponse,
    QueueUpdate,
    QueueWritten,
    ScoreIn,
    ScoreRecorded,
)
from apiary.errors import InvalidRequest, NotFound, PermissionDenied
from apiary.web.errors import ErrorResponse

READ, WRITE = Permission.QUEUES_READ, Permission.QUEUES_WRITE
#: Recording a score publishes an event update: the pipeline's answers apply too.
_SCORE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    413: {"model": ErrorResponse, "description": "Feedback too large for the queue"},
    429: {"model": ErrorResponse, "description": "Replica busy; Retry-After"},
}
ANNOTATE = Permission.ANNOTATIONS_WRITE

_fillers: weakref.WeakKeyDictionary[DataPlaneContext, QueueFiller] = (
    weakref.WeakKeyDictionary())


def filler_of(context: DataPlaneContext) -> QueueFiller:
    """The replica's queue filler, made on first use."""
    filler = _fillers.get(context)
    if filler is None:
        filler = QueueFiller(database=lambda: context.dpdb, store=context.store,
                             interval_s=context.settings.review_fill_interval_s,
                             lookback_s=context.settings.review_fill_lookback_s)
        filler = _fillers.setdefault(context, filler)
    return filler


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    context: DataPlaneContext | None = getattr(app.state, "dataplane", None)
    task = asyncio.create_task(filler_of(context).run()) if context is not None else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


router = APIRouter(tags=["annotation queues"], lifespan=_lifespan)


# --- shapes ---------------------------------------------------------------------------


def queue_out(queue: AnnotationQueue, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": queue.id, "name": queue.name, "description": queue.description or "",
        "filters": {"filterArray": list(queue.filters)}, "enabled": queue.enabled,
        "scope_id": queue.project_id, "scope_type": "project", "is_active": True,
        "created_at": iso(queue.created_at), "updated_at": iso(queue.updated_at),
        "reviewers": list(queue.reviewers), "criteria": list(queue.criteria or []),
        "item_counts": counts,
        "last_filled_at": iso(queue.last_filled_at),
    }


def item_out(item: AnnotationItem) -> dict[str, Any]:
    return {
        "queue_id": item.queue_id, "event_id": item.event_id, "status": item.status,
        "source": item.source, "assignee": item.assignee, "added_by": item.added_by,
        "added_at": iso(item.added_at), "updated_at": iso(item.updated_at),
        "completed_at": iso(item.completed_at), "completed_by": item.completed_by,
        "feedback": item.feedback,
    }


def _shaped(db: Session, queue: AnnotationQueue) -> dict[str, Any]:
    return queue_out(queue, queue_ops.item_counts(db, [queue.id])[queue.id])


def _filters(filters: QueueFilters | None) -> list[dict[str, Any]] | None:
    return None if filters is None else [f.model_dump() for f in filters.filterArray]


def _criteria(criteria: list[Criterion] | None) -> list[dict[str, Any]] | None:
    return None if criteria is None else [c.model_dump() for c in criteria]


def _may_act(principal: Principal, queue: AnnotationQueue,
             item: AnnotationItem | None) -> None:
    """PermissionDenied unless ``principal`` may work on ``item`` (or claim in ``queue``)."""
    if WRITE in principal.permissions:
        return
    if queue.reviewers and principal.subject not in queue.reviewers:
        raise PermissionDenied("this credential is not a reviewer of the queue")
    if item is not None and item.assignee not in (None, principal.subject):
        raise PermissionDenied("this item is assigned to another reviewer",
                               event_id=item.event_id)


# --- queues (HoneyHive /v1/queues) ----------------------------------------------------


@router.get("/v1/queues", response_model=QueuesResponse, responses=ERRORS,
            summary="The project's annotation queues")
async def list_queues(request: Request, enabled: bool | None = None) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, READ)

    def work(db: Session) -> dict[str, Any]:
        queues = queue_ops.list_queues(db, principal.project_id, enabled=enabled)
        counts = queue_ops.item_counts(db, [q.id for q in queues])
        return {"queues": [queue_out(q, counts[q.id]) for q in queues]}

    return await in_transaction(context, work)


@router.post("/v1/queues", status_code=201, response_model=QueueWritten, responses=ERRORS,
             summary="Create an annotation queue (answers 201, as the SDK expects)")
async def create_queue(request: Request, body: QueueCreate) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)

    def work(db: Session) -> dict[str, Any]:
        queue = queue_ops.create_queue(
            db, owner_of(principal), name=body.name, description=body.description,
            filters=_filters(body.filters) or [],
            enabled=True if body.enabled is None else body.enabled,
            reviewers=body.reviewers or [], event_ids=body.event_ids or [],
            criteria=_criteria(body.criteria) or [])
        return {"queue": _shaped(db, queue), "message": "annotation queue created"}

    return await in_transaction(context, work)


@router.get("/v1/queues/{queue_id}", response_model=QueueOut, responses=ERRORS,
            summary="One annotation queue (its fields at the top level, as the SDK reads it)")
async def get_queue(request: Request, queue_id: PathId) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, READ)
    return await in_transaction(context, lambda db: _shaped(
        db, queue_ops.get_queue(db, principal.project_id, queue_id)))


@router.put("/v1/queues/{queue_id}", response_model=QueueWritten, responses=ERRORS,
            summary="Change a queue: name, description, rules, reviewers; add or remove "
            "events")
async def update_queue(request: Request, queue_id: PathId, body: QueueUpdate) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    if body.id is not None and body.id != queue_id:
        raise InvalidRequest("the body's id is not the queue of the path", field="id")
    changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set
                               if name in ("name", "description", "enabled", "reviewers")}
    if body.filters is not None:
        changes["filters"] = _filters(body.filters)
    if body.criteria is not None:
        changes["criteria"] = _criteria(body.criteria)

    def work(db: Session) -> dict[str, Any]:
        queue = queue_ops.get_queue(db, principal.project_id, queue_id)
        queue_ops.update_queue(db, queue, changes)
        if body.add_event_ids:
            item_ops.add_events(db, queue, body.add_event_ids, source="manual",
                                added_by=principal.subject)
        for event_id in body.remove_event_ids or []:
            item_ops.remove_event(db, queue, event_id)
        return {"queue": _shaped(db, queue), "message": "annotation queue updated"}

    return await in_transaction(context, work)


@router.delete("/v1/queues/{queue_id}", response_model=QueueDeleted, responses=ERRORS,
               summary="Delete a queue and its items (events and feedback stay)")
async def delete_queue(request: Request, queue_id: PathId) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)

    def work(db: Session) -> dict[str, Any]:
        queue_ops.delete_queue(db, queue_ops.get_queue(db, principal.project_id, queue_id))
        return {"message": "annotation queue deleted"}

    return await in_transaction(context, work)


@router.post("/v1/queues/{queue_id}/fill", response_model=FillResult, responses=ERRORS,
             summary="Add the events matching the queue's rules now")
async def fill_queue(request: Request, queue_id: PathId) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    await in_transaction(context, lambda db: queue_ops.get_queue(db, principal.project_id,
                                                                 queue_id))
    return {"queue_id": queue_id, "added": await filler_of(context).fill(queue_id)}


# --- items ----------------------------------------------------------------------------


@router.get("/v1/queues/{queue_id}/items", response_model=ItemsResponse, responses=ERRORS,
            summary="The queue's items, oldest first")
async def list_items(
    request: Request, queue_id: PathId, status: str | None = None,
    assignee: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    page: DbPage = 1,
) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, READ)
    await in_transaction(context, lambda db: queue_ops.get_queue(db, principal.project_id,
                                                                 queue_id))
    await filler_of(context).fill(queue_id, only_if_due=True)

    def work(db: Session) -> dict[str, Any]:
        queue = queue_ops.get_queue(db, principal.project_id, queue_id)
        found = item_ops.list_items(db, queue, status=status, assignee=assignee,
                                    limit=limit, page=page)
        return {"items": [item_out(i) for i in found.items], "total": found.total,
                "page": page, "limit": limit}

    return await in_transaction(context, work)


@router.post("/v1/queues/{queue_id}/items", response_model=ItemsAdded, responses=ERRORS,
             summary="Add events to the queue by hand")
async def add_items(request: Request, queue_id: PathId, body: AddItems) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)

    def work(db: Session) -> dict[str, Any]:
        queue = queue_ops.get_queue(db, principal.project_id, queue_id)
        added = item_ops.add_events(db, queue, body.event_ids, source="manual",
                                    added_by=principal.subject)
        return {"queue_id": queue_id, "added": added}

    return await in_transaction(context, work)


@router.delete("/v1/queues/{queue_id}/items/{event_id}", response_model=ItemRemoved,
               responses=ERRORS, summary="Take an event out of the queue")
async def remove_item(request: Request, queue_id: PathId, event_id: PathId) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)

    def work(db: Session) -> dict[str, Any]:
        queue = queue_ops.get_queue(db, principal.project_id, queue_id)
        item_ops.get_item(db, queue, event_id)
        return {"removed": item_ops.remove_event(db, queue, event_id), "event_id": event_id}

    return await in_transaction(context, work)


@router.post("/v1/queues/{queue_id}/items/next", response_model=NextItem, responses=ERRORS,
             summary="Claim the next item for the caller (theirs first, then unassigned)")
async def next_item(request: Request, queue_id: PathId) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, ANNOTATE)

    def check(db: Session) -> None:
        _may_act(principal, queue_ops.get_queue(db, principal.project_id, queue_id), None)

    await in_transaction(context, check)
    await filler_of(context).fill(queue_id, only_if_due=True)

    def claim(db: Session) -> dict[str, Any] | None:
        queue = queue_ops.get_queue(db, principal.project_id, queue_id)
        item = item_ops.claim_next(db, queue, principal.subject)
        return item_out(item) if item is not None else None

    item = await in_transaction(context, claim)
    event = None
    if item is not None:
        with contextlib.suppress(NotFound):  # not stored yet: the reviewer sees it later
            event = await context.store.get_event(principal.project_id, item["event_id"])
    return {"item": item, "event": event}


@router.put("/v1/queues/{queue_id}/items/{event_id}", response_model=ItemOut,
            responses=ERRORS, summary="Assign an item, or set its status (skip, reopen)")
async def update_item(request: Request, queue_id: PathId, event_id: PathId,
                      body: ItemUpdate) -> dict[str, Any]:
    context = context_of(request)
    fields = body.model_fields_set
    principal = await project_principal(
        context, request, WRITE if "assignee" in fields else ANNOTATE)
    changes = {name: getattr(body, name) for name in fields}

    def work(db: Session) -> dict[str, Any]:
        queue = queue_ops.get_queue(db, principal.project_id, queue_id)
        item = item_ops.get_item(db, queue, event_id)
        _may_act(principal, queue, item)
        item_ops.change_item(db, item, changes)
        return item_out(item)

    return await in_transaction(context, work)


@router.post("/v1/queues/{queue_id}/items/{event_id}/scores", response_model=ScoreRecorded,
             responses=_SCORE_ERRORS, summary="Record a score: feedback on the event; completes "
             "the item")
async def record_score(request: Request, queue_id: PathId, event_id: PathId,
                       body: ScoreIn) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, ANNOTATE)

    def check(db: Session) -> None:
        queue = queue_ops.get_queue(db, principal.project_id, queue_id)
        _may_act(principal, queue, item_ops.get_item(db, queue, event_id))
        queue_ops.check_scores(queue.criteria, body.feedback)

    await in_transaction(context, check)
    # The event first: once this returns, the feedback is in the pipeline for good.
    await publish_patch(context, principal, event_id, {"feedback": dict(body.feedback)})

    def complete(db: Session) -> dict[str, Any]:
        queue = queue_ops.get_queue(db, principal.project_id, queue_id)
        item = item_ops.get_item(db, queue, event_id)
        item_ops.record_score(db, item, principal.subject, body.feedback)
        return item_out(item)

    item = await in_transaction(context, complete)
    return {"success": True, "event_id": event_id, "item": item}
