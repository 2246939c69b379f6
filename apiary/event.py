"""The event: Apiary's unit of data (DESIGN.md, "The event").

An event is one node of a trace: a session, a chain, a tool call or a model call. Every
producer (OTLP spans, and later the REST API) turns its input into :class:`Event` dicts,
which travel through JetStream inside an :class:`EventBatch` and become one row each in
ClickHouse's ``events`` table.

Events are plain dicts (a ``TypedDict``) rather than model instances because they are made
and read tens of thousands of times a second on the ingest path; the API layer validates
with pydantic models at its edge.

Conventions:

- ids are strings; ``parent_id`` is ``None`` for a root; ``session_id`` is ``""`` when the
  producer could not tell (the writer links it, see :mod:`apiary.enrich`).
- ``start_time`` and ``end_time`` are epoch **milliseconds** (float, sub-ms precision);
  ``duration`` is milliseconds.
- ``inputs``, ``outputs``, ``config``, ``metadata``, ``metrics``, ``feedback`` and
  ``user_properties`` are JSON objects (nested dicts, never dotted keys).
- ``trace_id`` and ``span_id`` are the OpenTelemetry ids in lowercase hex, ``""`` for
  events that did not come from a span.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypedDict


class EventType(StrEnum):
    SESSION = "session"
    CHAIN = "chain"
    TOOL = "tool"
    MODEL = "model"
    GENERIC = "generic"


EVENT_TYPES = frozenset(t.value for t in EventType)

#: The JSON-object fields of an event, in their column order.
OBJECT_FIELDS = (
    "config", "inputs", "outputs", "metadata", "metrics", "feedback", "user_properties",
)


class Event(TypedDict):
    event_id: str
    session_id: str
    parent_id: str | None
    children_ids: list[str]
    event_type: str
    event_name: str
    source: str
    config: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    error: str | None
    start_time: float
    end_time: float
    duration: float
    metadata: dict[str, Any]
    metrics: dict[str, Any]
    feedback: dict[str, Any]
    user_properties: dict[str, Any]
    trace_id: str
    span_id: str


class Tenant(TypedDict):
    """Who an event belongs to. Every batch carries exactly one tenant."""

    org_id: str
    workspace_id: str
    project_id: str


class EventBatch(TypedDict):
    """What one JetStream message on ``events.>`` carries.

    ``version`` orders versions of the same event (ReplacingMergeTree's version column):
    it is fixed when the batch is made, so a redelivered batch writes identical rows.
    """

    schema: int
    kind: str
    tenant: Tenant
    version: int
    events: list[Event]


def new_event(**fields: Any) -> Event:
    """An event with every field present, defaults filled in; for tests and REST producers."""
    event: dict[str, Any] = {
        "event_id": "",
        "session_id": "",
        "parent_id": None,
        "children_ids": [],
        "event_type": EventType.CHAIN.value,
        "event_name": "",
        "source": "",
        "config": {},
        "inputs": {},
        "outputs": {},
        "error": None,
        "start_time": 0.0,
        "end_time": 0.0,
        "duration": 0.0,
        "metadata": {},
        "metrics": {},
        "feedback": {},
        "user_properties": {},
        "trace_id": "",
        "span_id": "",
    }
    unknown = set(fields) - set(event)
    if unknown:
        raise TypeError(f"unknown event fields: {sorted(unknown)}")
    event.update(fields)
    return event  # type: ignore[return-value]
