"""Request and response bodies of annotation queues (HoneyHive ``/v1/queues``) and of
Apiary's item endpoints under them.

The HoneyHive SDK's models (``honeyhive/_generated/models/*AnnotationQueue*``) are followed
where they exist: requests ``CreateAnnotationQueueRequest`` (``name``, ``description``,
``filters{filterArray}``, ``enabled``, ``event_ids``) and ``UpdateAnnotationQueueRequest``
(the same, ``id``, ``add_event_ids``, ``remove_event_ids``); a queue in answers carries
every field they require (``name, description, filters{filterArray}, enabled, id, scope_id,
scope_type, is_active, created_at, updated_at``). Apiary adds ``reviewers`` (subjects new
items are assigned to), ``criteria`` (what reviewers score, each under its feedback key)
and, in answers, ``item_counts`` and ``last_filled_at``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from apiary.dataplane.events.schemas import ID_PATTERN, Id
from apiary.dataplane.events.schemas_read import EventFilter, EventOut

MAX_IDS = 10_000
#: Who reviews: a subject such as ``user:<id>`` or ``key:<id>``.
Subject = Annotated[str, Field(min_length=1, max_length=200, pattern=ID_PATTERN)]
# Text a database stores as text: no NUL (PostgreSQL refuses it).
_TEXT = r"^[^\x00]*$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: A feedback key a criterion writes: ``rating``, ``helpful``, ``tone.label``.
CRITERION_KEY = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
MAX_CRITERIA = 20


class Criterion(_Request):
    """One thing reviewers score; the score is written to the event's feedback under
    ``key``."""

    key: str = Field(min_length=1, max_length=100, pattern=CRITERION_KEY,
                     description="The feedback key the score is written to.")
    kind: Literal["rating", "thumbs", "category", "text"] = Field(
        description="rating: an integer 1 to 5; thumbs: true (up) or false (down); "
        "category: one of ``options``; text: free text.")
    label: str | None = Field(default=None, max_length=200, pattern=_TEXT,
                              description="What reviewers read; the key when absent.")
    options: list[Annotated[str, Field(min_length=1, max_length=100, pattern=_TEXT)]] | None = (
        Field(default=None, max_length=50, description="The labels of a category "
              "(2 to 50, distinct); only for kind category."))


class QueueFilters(_Request):
    filterArray: list[EventFilter] = Field(default_factory=list, max_length=100)


class QueueCreate(_Request):
    name: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN)
    description: str | None = Field(default=None, max_length=10_000, pattern=_TEXT)
    filters: QueueFilters | None = Field(
        default=None, description="Rules: events of the project matching every filter are "
        "added as they arrive (the export filter language).")
    enabled: bool | None = Field(default=None, description="Whether rules fill the queue. "
                                 "Default true.")
    event_ids: list[Id] | None = Field(default=None, max_length=MAX_IDS)
    reviewers: list[Subject] | None = Field(default=None, max_length=100,
                                        description="Subjects (user:<id>, key:<id>) new "
                                        "items are assigned to, least loaded first.")
    criteria: list[Criterion] | None = Field(default=None, max_length=MAX_CRITERIA,
                                             description="What reviewers score (keys "
                                             "distinct).")


class QueueUpdate(_Request):
    id: str | None = Field(default=None, description="The SDK sends it; must be the path's.")
    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=ID_PATTERN)
    description: str | None = Field(default=None, max_length=10_000, pattern=_TEXT)
    filters: QueueFilters | None = None
    enabled: bool | None = None
    add_event_ids: list[Id] | None = Field(default=None, max_length=MAX_IDS)
    remove_event_ids: list[Id] | None = Field(default=None, max_length=MAX_IDS)
    reviewers: list[Subject] | None = Field(default=None, max_length=100)
    criteria: list[Criterion] | None = Field(default=None, max_length=MAX_CRITERIA)


class QueueOut(BaseModel):
    id: str
    name: str
    description: str
    filters: dict[str, Any]
    enabled: bool
    scope_id: str = Field(description="The project the queue belongs to.")
    scope_type: str
    is_active: bool
    created_at: str
    updated_at: str | None
    reviewers: list[str]
    criteria: list[Criterion]
    item_counts: dict[str, int]
    last_filled_at: str | None


class QueueWritten(BaseModel):
    queue: QueueOut
    message: str


class QueuesResponse(BaseModel):
    queues: list[QueueOut]


class QueueDeleted(BaseModel):
    message: str


class ItemOut(BaseModel):
    queue_id: str
    event_id: str
    status: str = Field(description="pending, in_progress, completed or skipped")
    source: str = Field(description="manual or rule")
    assignee: str | None
    added_by: str | None
    added_at: str
    updated_at: str
    completed_at: str | None
    completed_by: str | None
    feedback: dict[str, Any] | None


class ItemsResponse(BaseModel):
    items: list[ItemOut]
    total: int
    page: int
    limit: int


class AddItems(_Request):
    event_ids: list[Id] = Field(min_length=1, max_length=MAX_IDS)


class ItemsAdded(BaseModel):
    queue_id: str
    added: list[str] = Field(description="Events that became open items (already present "
                             "ones are not repeated).")


class ItemRemoved(BaseModel):
    removed: bool
    event_id: str


class ItemUpdate(_Request):
    assignee: Subject | None = Field(default=None,
                                     description="A subject, or null to unassign.")
    status: str | None = Field(default=None, description="pending, in_progress or skipped")


class NextItem(BaseModel):
    item: ItemOut | None = Field(description="The claimed item; null when none is waiting.")
    event: EventOut | None = Field(description="Its event, if it is stored yet.")


class ScoreIn(_Request):
    feedback: dict[str, Any] = Field(min_length=1, description="Merged into the event's "
                                     "feedback (key by key), e.g. {\"rating\": 4, "
                                     "\"comment\": \"...\"}.")


class ScoreRecorded(BaseModel):
    success: bool
    event_id: str
    item: ItemOut


class FillResult(BaseModel):
    queue_id: str
    added: int
