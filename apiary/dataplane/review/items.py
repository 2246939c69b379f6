"""Items of annotation queues in dpdb: adding events, assigning them, claiming, scoring.

Guarantees (each function works inside the caller's transaction):

- An event is in a queue at most once: adding it again changes nothing, except that a
  person adding back an event that was removed reopens it. A rule never re-adds an event
  a person removed (the item stays as a ``removed`` tombstone).
- New items are assigned to the queue's reviewer with the fewest open (pending or
  in-progress) items, the earlier-listed reviewer on a tie; a queue without reviewers
  leaves them unassigned, for anyone allowed to claim.
- :func:`claim_next` hands a reviewer the oldest pending item assigned to them, else the
  oldest unassigned one (taking it), and marks it in progress: two reviewers claiming at
  once never get the same item (the claim is one transaction, and SQLite and PostgreSQL
  both serialize the competing updates).
- :func:`record_score` completes an item with the feedback recorded; the score itself is
  written to the event by the caller (an event update), which this copy does not replace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from apiary.dataplane.db import AnnotationItem, AnnotationQueue, utcnow
from apiary.dataplane.db.models_review import ITEM_STATUSES
from apiary.errors import Conflict, InvalidRequest, NotFound

MAX_EVENTS = 10_000
OPEN = ("pending", "in_progress")
#: Statuses a reviewer may set by hand (completion goes through a score).
SETTABLE = ("pending", "in_progress", "skipped")


def _check_ids(event_ids: Sequence[str]) -> list[str]:
    if len(event_ids) > MAX_EVENTS:
        raise InvalidRequest(f"at most {MAX_EVENTS} events per request", field="event_ids",
                             limit=MAX_EVENTS)
    ids = list(dict.fromkeys(event_ids))
    if any(not i or len(i) > 256 for i in ids):
        raise InvalidRequest("event ids have 1 to 256 characters", field="event_ids")
    return ids


def _open_load(db: Session, queue: AnnotationQueue) -> dict[str, int]:
    load = {reviewer: 0 for reviewer in queue.reviewers}
    rows = db.execute(
        select(AnnotationItem.assignee, func.count())
        .where(AnnotationItem.queue_id == queue.id, AnnotationItem.status.in_(OPEN),
               AnnotationItem.assignee.in_(list(queue.reviewers)))
        .group_by(AnnotationItem.assignee))
    for assignee, count in rows:
        if assignee is not None:
            load[assignee] = int(count)
    return load


def _next_reviewer(load: dict[str, int]) -> str | None:
    if not load:
        return None
    # min() keeps the first of equals: the earlier-listed reviewer wins a tie.
    reviewer = min(load, key=lambda r: load[r])
    load[reviewer] += 1
    return reviewer


def add_events(db: Session, queue: AnnotationQueue, event_ids: Sequence[str], *,
               source: str, added_by: str | None) -> list[str]:
    """Add events to the queue; returns the ids that became (or became again) open items."""
    ids = _check_ids(event_ids)
    if not ids:
        return []
    existing = {item.event_id: item for item in db.scalars(
        select(AnnotationItem).where(AnnotationItem.queue_id == queue.id,
                                     AnnotationItem.event_id.in_(ids)))}
    load = _open_load(db, queue)
    now = utcnow()
    added: list[str] = []
    for event_id in ids:
        item = existing.get(event_id)
        if item is not None:
            if item.status == "removed" and source == "manual":
                item.status, item.assignee = "pending", _next_reviewer(load)
                item.added_by, item.added_at, item.updated_at = added_by, now, now
                added.append(event_id)
            continue
        db.add(AnnotationItem(
            queue_id=queue.id, event_id=event_id, project_id=queue.project_id,
            status="pending", source=source, assignee=_next_reviewer(load),
            added_by=added_by, added_at=now, updated_at=now))
        added.append(event_id)
    db.flush()
    return added


def remove_event(db: Session, queue: AnnotationQueue, event_id: str) -> bool:
    """Take an event out of the queue (a tombstone keeps rules from re-adding it)."""
    item = db.get(AnnotationItem, (queue.id, event_id))
    if item is None or item.status == "removed":
        return False
    item.status, item.updated_at = "removed", utcnow()
    db.flush()
    return True


def get_item(db: Session, queue: AnnotationQueue, event_id: str) -> AnnotationItem:
    item = db.get(AnnotationItem, (queue.id, event_id))
    if item is None or item.status == "removed":
        raise NotFound("this event is not in the annotation queue", event_id=event_id)
    return item


@dataclass(frozen=True, slots=True)
class ItemPage:
    items: list[AnnotationItem]
    total: int


def list_items(db: Session, queue: AnnotationQueue, *, status: str | None = None,
               assignee: str | None = None, limit: int = 100, page: int = 1) -> ItemPage:
    """One page of the queue's items, oldest first (removed ones never)."""
    if status is not None and (status not in ITEM_STATUSES or status == "removed"):
        raise InvalidRequest("unknown item status", field="status")
    conditions = [AnnotationItem.queue_id == queue.id, AnnotationItem.status != "removed"]
    if status is not None:
        conditions.append(AnnotationItem.status == status)
    if assignee is not None:
        conditions.append(AnnotationItem.assignee == assignee)
    total = db.execute(select(func.count()).select_from(AnnotationItem)
                       .where(*conditions)).scalar_one()
    items = list(db.scalars(
        select(AnnotationItem).where(*conditions)
        .order_by(AnnotationItem.added_at, AnnotationItem.event_id)
        .offset((page - 1) * limit).limit(limit)))
    return ItemPage(items, int(total))


def claim_next(db: Session, queue: AnnotationQueue, subject: str) -> AnnotationItem | None:
    """The next item for ``subject`` (theirs first, then unassigned), now in progress."""
    for mine in (True, False):
        owner = (AnnotationItem.assignee == subject if mine
                 else AnnotationItem.assignee.is_(None))
        candidates = db.scalars(
            select(AnnotationItem.event_id)
            .where(AnnotationItem.queue_id == queue.id, AnnotationItem.status == "pending",
                   owner)
            .order_by(AnnotationItem.added_at, AnnotationItem.event_id).limit(20)).all()
        for event_id in candidates:
            # Compare-and-set: only one claimant's update matches a still-pending row.
            claimed = db.execute(
                update(AnnotationItem)
                .where(AnnotationItem.queue_id == queue.id,
                       AnnotationItem.event_id == event_id,
                       AnnotationItem.status == "pending",
                       or_(AnnotationItem.assignee == subject,
                           AnnotationItem.assignee.is_(None)))
                .values(status="in_progress", assignee=subject, updated_at=utcnow())
                .execution_options(synchronize_session=False))
            if claimed.rowcount:  # type: ignore[attr-defined]
                item = db.get(AnnotationItem, (queue.id, event_id))
                if item is not None:
                    db.refresh(item)
                return item
    return None


def change_item(db: Session, item: AnnotationItem, changes: dict[str, Any]) -> None:
    """Set ``assignee`` (None: unassigned) and/or ``status`` (pending, in_progress,
    skipped); a completed item is reopened only by setting it pending."""
    if "status" in changes and changes["status"] is not None:
        status = changes["status"]
        if status not in SETTABLE:
            raise InvalidRequest(f"status must be one of {', '.join(SETTABLE)}; an item "
                                 "is completed by recording a score", field="status")
        item.status = status
        if status == "pending":
            item.completed_at = item.completed_by = None
    if "assignee" in changes:
        item.assignee = changes["assignee"]
    item.updated_at = utcnow()
    db.flush()


def record_score(db: Session, item: AnnotationItem, subject: str,
                 feedback: dict[str, Any]) -> None:
    """Mark the item completed by ``subject`` with the ``feedback`` recorded."""
    if item.status == "removed":
        raise Conflict("this event was removed from the queue")
    now = utcnow()
    item.status, item.feedback = "completed", dict(feedback)
    item.completed_at, item.completed_by, item.updated_at = now, subject, now
    if item.assignee is None:
        item.assignee = subject
    db.flush()
