"""Datapoints (HoneyHive ``/v1/datapoints``): CRUD, listing by ids and dataset, and making
datapoints from stored events (``POST /v1/datapoints/batch``).

Datapoints live in dpdb, in the caller's project (``datasets:read``/``datasets:write``);
turning events into datapoints also reads events (``events:read``). ``GET
/v1/datapoints/{id}`` answers ``{"datapoint": [ ... ]}`` — a list of one, as the SDK's
``evaluate(dataset_id=...)`` reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session
from starlette.requests import Request

from apiary.dataplane.auth import Permission
from apiary.dataplane.datasets import catalog as ops
from apiary.dataplane.datasets import files
from apiary.dataplane.datasets.catalog import DatapointSpec
from apiary.dataplane.datasets.schemas import (
    MAX_IDS,
    DatapointCreate,
    DatapointCreated,
    DatapointDeleted,
    DatapointResponse,
    DatapointsFromEvents,
    DatapointsFromEventsCreated,
    DatapointsResponse,
    DatapointUpdate,
    DatapointUpdated,
)
from apiary.dataplane.db import Datapoint
from apiary.dataplane.replica.context import context_of
from apiary.dataplane.replica.routing import (
    ERRORS,
    in_transaction,
    iso,
    owner_of,
    project_principal,
)
from apiary.errors import InvalidRequest

router = APIRouter(tags=["datapoints"])

READ, WRITE = Permission.DATASETS_READ, Permission.DATASETS_WRITE


def datapoint_out(db: Session, datapoints: Sequence[Datapoint]) -> list[dict[str, Any]]:
    linked = ops.linked_datasets(db, [d.id for d in datapoints])
    return [{"id": d.id, "inputs": d.inputs, "history": d.history,
             "ground_truth": d.ground_truth, "metadata": d.meta,
             "linked_event": d.linked_event, "created_at": iso(d.created_at),
             "updated_at": iso(d.updated_at), "linked_datasets": linked[d.id]}
            for d in datapoints]


@router.post("/v1/datapoints", response_model=DatapointCreated, responses=ERRORS,
             summary="Create a datapoint (optionally appended to datasets)")
async def create_datapoint(request: Request, body: DatapointCreate) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    spec = DatapointSpec(inputs=body.inputs or {}, history=body.history or [],
                         ground_truth=body.ground_truth, metadata=body.metadata,
                         linked_event=body.linked_event)

    def work(db: Session) -> list[str]:
        created = ops.create_datapoints(db, owner_of(principal), [spec],
                                        body.linked_datasets or ())
        return [d.id for d in created]
    return {"inserted": True, "result": {"insertedIds": await in_transaction(context, work)}}


@router.get("/v1/datapoints/{datapoint_id}", response_model=DatapointResponse,
            responses=ERRORS, summary="One datapoint (in a list of one)")
async def get_datapoint(request: Request, datapoint_id: str) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, READ)

    def work(db: Session) -> list[dict[str, Any]]:
        return datapoint_out(db, [ops.get_datapoint(db, principal.project_id, datapoint_id)])
    return {"datapoint": await in_transaction(context, work)}


@router.get("/v1/datapoints", response_model=DatapointsResponse, responses=ERRORS,
            summary="Datapoints by ids and/or of a dataset (by name or id)")
async def list_datapoints(
    request: Request,
    bracketed: Annotated[list[str] | None, Query(alias="datapoint_ids[]", max_length=MAX_IDS,
                                                 description="Ids (HoneyHive's key[] form)")
                         ] = None,
    datapoint_ids: Annotated[list[str] | None, Query(max_length=MAX_IDS)] = None,
    dataset_name: Annotated[str | None, Query(max_length=200)] = None,
    dataset_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_IDS)] = MAX_IDS,
) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, READ)
    ids = None
    if bracketed is not None or datapoint_ids is not None:
        ids = [*(bracketed or []), *(datapoint_ids or [])]

    def work(db: Session) -> list[dict[str, Any]]:
        found = ops.list_datapoints(db, principal.project_id, ids=ids,
                                    dataset_name=dataset_name, dataset_id=dataset_id,
                                    limit=limit)
        return datapoint_out(db, found)
    return {"datapoints": await in_transaction(context, work)}


@router.put("/v1/datapoints/{datapoint_id}", response_model=DatapointUpdated,
            responses=ERRORS, summary="Replace the given fields of a datapoint")
async def update_datapoint(request: Request, datapoint_id: str, body: DatapointUpdate
                           ) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("inputs", {}) is None or changes.get("history", []) is None:
        raise InvalidRequest("inputs and history cannot be null", field="inputs")

    def work(db: Session) -> bool:
        datapoint = ops.get_datapoint(db, principal.project_id, datapoint_id)
        return ops.update_datapoint(db, datapoint, changes)
    modified = await in_transaction(context, work)
    return {"updated": True, "result": {"modifiedCount": int(modified)}}


@router.delete("/v1/datapoints/{datapoint_id}", response_model=DatapointDeleted,
               responses=ERRORS, summary="Delete a datapoint (dataset versions keep their "
               "frozen copy)")
async def delete_datapoint(request: Request, datapoint_id: str) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE)

    def work(db: Session) -> None:
        ops.delete_datapoint(db, ops.get_datapoint(db, principal.project_id, datapoint_id))
    await in_transaction(context, work)
    return {"deleted": True}


@router.post("/v1/datapoints/batch", response_model=DatapointsFromEventsCreated,
             responses=ERRORS, summary="Make datapoints from stored events (by id, or by "
             "export filters)")
async def datapoints_from_events(request: Request, body: DatapointsFromEvents
                                 ) -> dict[str, Any]:
    context = context_of(request)
    principal = await project_principal(context, request, WRITE, Permission.EVENTS_READ)
    mapping = files.FieldMapping.of(body.mapping.model_dump() if body.mapping else None)
    limit = body.limit or MAX_IDS
    if body.events:
        events = await context.store.latest_events(principal.project_id, body.events[:limit])
        order = {event_id: i for i, event_id in enumerate(body.events)}
        events.sort(key=lambda e: order.get(e["event_id"], len(order)))
    elif body.filters is not None or body.dateRange is not None or body.selectAll:
        filters = body.filters if isinstance(body.filters, list) else (
            [body.filters] if body.filters else [])
        query: dict[str, Any] = {"filters": filters, "limit": limit, "page": 1}
        if body.dateRange is not None:
            query["dateRange"] = body.dateRange.model_dump(by_alias=True, exclude_none=True)
        events = (await context.store.export(principal.project_id, query))["events"]
    else:
        raise InvalidRequest("name the events (events) or select them (filters, dateRange "
                             "or selectAll)", field="events")
    specs = files.events_to_specs(events, mapping)

    def work(db: Session) -> list[str]:
        datasets = [body.dataset_id] if body.dataset_id else []
        if body.dataset_id:
            ops.get_dataset(db, principal.project_id, body.dataset_id)
        return [d.id for d in ops.create_datapoints(db, owner_of(principal), specs, datasets)]
    ids = await in_transaction(context, work) if specs else []
    return {"inserted": bool(ids), "insertedIds": ids, "events_matched": len(events)}
