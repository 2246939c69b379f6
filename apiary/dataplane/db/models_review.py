"""dpdb tables of human review: annotation queues and their items.

- An **annotation queue** (``annotation_queues``) belongs to one project. It is filled by
  hand (event ids added) and/or by rules: ``filters`` in the export filter language, matched
  against the project's events by :mod:`apiary.dataplane.review.filler`, which remembers in
  ``fill_cursor`` the start time from which its next fill looks. ``reviewers`` are the
  subjects (``user:<id>``, ``key:<id>``) new items are assigned to. ``criteria`` are what
  reviewers score (a rating of 1 to 5, thumbs, a label from a list, free text), each under the
  feedback key it writes.
- An **item** (``annotation_items``) is one event in one queue, keyed by
  ``(queue_id, event_id)``: an event is in a queue at most once, whoever adds it and however
  often. Its ``status`` moves ``pending`` → ``in_progress`` (claimed) → ``completed`` (scored)
  or ``skipped``; ``removed`` is a tombstone, kept so that a rule never brings back an event
  a person took out. ``feedback`` is what the reviewer recorded; the score itself lives on the
  event (an update of its ``feedback``), this copy is the queue's record of it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from apiary.dataplane.db._base import Base, UTCDateTime

ITEM_STATUSES = ("pending", "in_progress", "completed", "skipped", "removed")
ITEM_SOURCES = ("manual", "rule")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class AnnotationQueue(Base):
    __tablename__ = "annotation_queues"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    filters: Mapped[list[Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(default=True)
    reviewers: Mapped[list[str]] = mapped_column(JSON)
    #: What reviewers score (migration 0004): ``[{key, kind, label, options}]``; null on
    #: queues made before it, read as none.
    criteria: Mapped[list[Any] | None] = mapped_column(JSON)
    fill_cursor: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_filled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AnnotationItem(Base):
    __tablename__ = "annotation_items"
    __table_args__ = (
        CheckConstraint(_in("status", ITEM_STATUSES), name="status"),
        CheckConstraint(_in("source", ITEM_SOURCES), name="source"),
        Index("ix_annotation_items_queue_id_status_added_at", "queue_id", "status",
              "added_at"),
        Index("ix_annotation_items_project_id_event_id", "project_id", "event_id"),
    )

    queue_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("annotation_queues.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(8))
    assignee: Mapped[str | None] = mapped_column(String(200))
    added_by: Mapped[str | None] = mapped_column(String(200))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_by: Mapped[str | None] = mapped_column(String(200))
    feedback: Mapped[dict[str, Any] | None] = mapped_column(JSON)
