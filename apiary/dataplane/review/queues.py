"""Annotation queues in dpdb: create, read, change, delete; their rules and reviewers.

Every function takes an open session and works inside the caller's transaction; every
lookup is scoped to one project (another project's queue is "not found"). Errors are
:mod:`apiary.errors` (400 bad input, 404 unknown id, 409 duplicate name).

A queue's ``filters`` are the export filter language (``{field, operator, value, type}``,
:mod:`apiary.store`); they are checked when set, by compiling them exactly as the filler
will, so a queue never holds a rule that cannot run. Each is stored with an explicit
``type`` and ``value``, as HoneyHive's ``SingleFilter`` requires them on the way back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from apiary.dataplane.db import AnnotationItem, AnnotationQueue, Owner, utcnow
from apiary.dataplane.review.items import add_events
from apiary.errors import Conflict, InvalidRequest, NotFound
from apiary.store import plan_export

MAX_NAME = 200
MAX_FILTERS = 100
MAX_REVIEWERS = 100
MAX_SUBJECT = 200


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidRequest(f"a queue name must have 1 to {MAX_NAME} characters",
                             field="name")
    return name


def check_filters(filters: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The filters in stored form; 400 naming the filter that the store would refuse."""
    if len(filters) > MAX_FILTERS:
        raise InvalidRequest(f"at most {MAX_FILTERS} filters", field="filters",
                             limit=MAX_FILTERS)
    normalized = [{"field": f.get("field"), "operator": f.get("operator"),
                   "value": f.get("value"), "type": f.get("type") or "string"}
                  for f in filters]
    # Compiling needs no store: what plans here runs there.
    plan_export("apiary", "project", {"filters": normalized, "limit": 1})
    return normalized


def check_reviewers(reviewers: Iterable[str]) -> list[str]:
    """Reviewer subjects (``user:<id>``, ``key:<id>``), de-duplicated, in the order given."""
    unique = list(dict.fromkeys(r.strip() for r in reviewers))
    if len(unique) > MAX_REVIEWERS:
        raise InvalidRequest(f"at most {MAX_REVIEWERS} reviewers", field="reviewers",
                             limit=MAX_REVIEWERS)
    if any(not r or len(r) > MAX_SUBJECT for r in unique):
        raise InvalidRequest(f"a reviewer is a subject of 1 to {MAX_SUBJECT} characters",
                             field="reviewers")
    return unique


def check_criteria(criteria: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Scoring criteria in stored form (``key``, ``kind``, and ``label``/``options`` when
    set); 400 on a repeated key, or options missing from a category or given elsewhere."""
    stored: list[dict[str, Any]] = []
    seen: set[str] = set()
    for criterion in criteria:
        key, kind = criterion["key"], criterion["kind"]
        if key in seen:
            raise InvalidRequest("two criteria write the same feedback key",
                                 field="criteria", key=key)
        seen.add(key)
        options = criterion.get("options")
        if kind == "category":
            if not options or len(options) < 2 or len(set(options)) != len(options):
                raise InvalidRequest("a category criterion needs 2 or more distinct "
                                     "options", field="criteria", key=key)
        elif options is not None:
            raise InvalidRequest("only a category criterion has options",
                                 field="criteria", key=key)
        entry: dict[str, Any] = {"key": key, "kind": kind}
        if criterion.get("label"):
            entry["label"] = criterion["label"]
        if options is not None:
            entry["options"] = list(options)
        stored.append(entry)
    return stored


def check_scores(criteria: Sequence[Mapping[str, Any]] | None,
                 feedback: Mapping[str, Any]) -> None:
    """400 unless each of ``feedback``'s values for a criterion's key fits its kind (a
    rating an integer 1 to 5, thumbs a boolean, a category one of its options, text a
    string). Other keys (a comment, say) pass as they are."""
    for criterion in criteria or []:
        key, kind = criterion["key"], criterion["kind"]
        if key not in feedback:
            continue
        value = feedback[key]
        fits = {
            "rating": isinstance(value, int) and not isinstance(value, bool)
            and 1 <= value <= 5,
            "thumbs": isinstance(value, bool),
            "category": value in (criterion.get("options") or []),
            "text": isinstance(value, str),
        }.get(kind, True)
        if not fits:
            raise InvalidRequest(f"the score for {key!r} does not fit its criterion "
                                 f"({kind})", field="feedback", key=key)


def _require_unique_name(db: Session, project_id: str, name: str,
                         exclude: str | None = None) -> None:
    statement = select(AnnotationQueue.id).where(AnnotationQueue.project_id == project_id,
                                                 AnnotationQueue.name == name)
    if exclude is not None:
        statement = statement.where(AnnotationQueue.id != exclude)
    if db.execute(statement).first() is not None:
        raise Conflict("an annotation queue with this name exists in the project",
                       field="name")


def create_queue(db: Session, owner: Owner, *, name: str, description: str | None,
                 filters: Sequence[Mapping[str, Any]], enabled: bool,
                 reviewers: Sequence[str], event_ids: Sequence[str],
                 criteria: Sequence[Mapping[str, Any]] = ()) -> AnnotationQueue:
    """A new queue of ``owner``'s project; ``event_ids`` become its first (manual) items.

    A queue with rules considers events from its creation on (less the fill look-back).
    """
    name = _check_name(name)
    stored_filters = check_filters(filters)
    reviewer_list = check_reviewers(reviewers)
    stored_criteria = check_criteria(criteria)
    _require_unique_name(db, owner.project_id, name)
    now = utcnow()
    queue = AnnotationQueue(
        id=str(uuid.uuid4()), org_id=owner.org_id, workspace_id=owner.workspace_id,
        project_id=owner.project_id, name=name, description=description,
        filters=stored_filters, enabled=enabled, reviewers=reviewer_list,
        criteria=stored_criteria, fill_cursor=now,
        last_filled_at=None, created_by=owner.subject, created_at=now, updated_at=now,
    )
    db.add(queue)
    db.flush()
    if event_ids:
        add_events(db, queue, event_ids, source="manual", added_by=owner.subject)
    return queue


def get_queue(db: Session, project_id: str, queue_id: str) -> AnnotationQueue:
    queue = db.get(AnnotationQueue, queue_id)
    if queue is None or queue.project_id != project_id:
        raise NotFound("annotation queue not found", project_id=project_id)
    return queue


def list_queues(db: Session, project_id: str, *,
                enabled: bool | None = None) -> list[AnnotationQueue]:
    """The project's queues, oldest first, optionally only enabled (or disabled) ones."""
    statement = select(AnnotationQueue).where(AnnotationQueue.project_id == project_id)
    if enabled is not None:
        statement = statement.where(AnnotationQueue.enabled == enabled)
    return list(db.scalars(statement.order_by(AnnotationQueue.created_at,
                                              AnnotationQueue.id)))


def update_queue(db: Session, queue: AnnotationQueue, changes: Mapping[str, Any]) -> None:
    """Apply the fields present in ``changes`` (name, description, filters, enabled,
    reviewers, criteria). New rules apply from the queue's current fill position on."""
    if changes.get("name") is not None:
        name = _check_name(changes["name"])
        _require_unique_name(db, queue.project_id, name, exclude=queue.id)
        queue.name = name
    if "description" in changes:
        queue.description = changes["description"]
    if changes.get("filters") is not None:
        queue.filters = check_filters(changes["filters"])
    if changes.get("enabled") is not None:
        queue.enabled = bool(changes["enabled"])
    if changes.get("reviewers") is not None:
        queue.reviewers = check_reviewers(changes["reviewers"])
    if changes.get("criteria") is not None:
        queue.criteria = check_criteria(changes["criteria"])
    queue.updated_at = utcnow()
    db.flush()


def delete_queue(db: Session, queue: AnnotationQueue) -> None:
    """Delete the queue and its items (the events and their feedback stay)."""
    db.execute(delete(AnnotationItem).where(AnnotationItem.queue_id == queue.id))
    db.delete(queue)
    db.flush()


def item_counts(db: Session, queue_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{queue_id: {status: count}}`` (tombstones of removed events not counted)."""
    counts: dict[str, dict[str, int]] = {
        q: {"pending": 0, "in_progress": 0, "completed": 0, "skipped": 0} for q in queue_ids}
    if not queue_ids:
        return counts
    rows = db.execute(
        select(AnnotationItem.queue_id, AnnotationItem.status, func.count())
        .where(AnnotationItem.queue_id.in_(list(queue_ids)),
               AnnotationItem.status != "removed")
        .group_by(AnnotationItem.queue_id, AnnotationItem.status))
    for queue_id, status, count in rows:
        counts[queue_id][status] = int(count)
    return counts
