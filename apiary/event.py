"""The event: Apiary's unit of data (docs/architecture.md, "The event model").

An event is one node of a trace: a session, a chain, a tool call or a model call. Every
producer (OTLP spans, and later the REST API) turns its input into :class:`Event` dicts,
which travel through JetStream inside an :class:`EventBatch` and become one row each in
ClickHouse's ``events`` table.

Events are plain dicts (a ``TypedDict``) rather than model instances because they are made
and read tens of thousands of times a second on the ingest path; the API layer validates
with pydantic models at its edge.

Conventions:

- ids are strings; ``parent_id`` is ``None`` for a root; ``session_id`` is ``""`` when the
  producer could not tell (the writer links it, see :mod:`apiary.dataplane.enrich`).
- ``start_time`` and ``end_time`` are epoch **milliseconds** (float, sub-ms precision);
  ``duration`` is milliseconds.
- ``inputs``, ``outputs``, ``config``, ``metadata``, ``metrics``, ``feedback`` and
  ``user_properties`` are JSON objects (nested dicts, never dotted keys).
- ``trace_id`` and ``span_id`` are the OpenTelemetry ids in lowercase hex, ``""`` for
  events that did not come from a span.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NotRequired, Required, TypedDict


class EventType(StrEnum):
    SESSION = "session"
    CHAIN = "chain"
    TOOL = "tool"
    MODEL = "model"
    GENERIC = "generic"


EVENT_TYPES = frozenset(t.value for t in EventType)

#: Batch kinds (the ``<kind>`` of subject ``events.<kind>.<project>``): spans from OTLP
#: ingestion, events created through the REST API, and patches of events.
SPANS_KIND = "spans"
API_KIND = "api"
UPDATES_KIND = "updates"

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

    Batches of kind ``updates`` carry no events but ``patches``: partial updates of events
    (``PUT /events``) that writers merge into the stored events (:class:`EventPatch`).
    """

    schema: int
    kind: str
    tenant: Tenant
    version: int
    events: list[Event]
    patches: NotRequired[list[EventPatch]]


#: Object fields a patch merges into the event key by key (a shallow merge: the patch's
#: top-level keys replace the event's, other keys stay). ``inputs`` is only patched when a
#: session is started again with the id of an existing session.
PATCH_MERGE_FIELDS = ("config", "inputs", "metadata", "metrics", "feedback", "user_properties")
#: Fields a patch replaces as a whole (HoneyHive: outputs are replaced, not merged).
PATCH_REPLACE_FIELDS = ("outputs", "duration", "end_time", "children_ids")
PATCH_FIELDS = PATCH_MERGE_FIELDS + PATCH_REPLACE_FIELDS


class EventPatch(TypedDict, total=False):
    """A partial update of one event (``PUT /events``), a version of it merged on write.

    ``version`` orders patches of the same event (epoch nanoseconds when it was accepted);
    patches apply in ``(version, patch_id)`` order. Every other field is optional; an
    absent field is left as it is. See :func:`apply_patch`.
    """

    event_id: Required[str]
    version: Required[int]
    config: dict[str, Any]
    inputs: dict[str, Any]
    metadata: dict[str, Any]
    metrics: dict[str, Any]
    feedback: dict[str, Any]
    user_properties: dict[str, Any]
    outputs: dict[str, Any]
    duration: float
    end_time: float
    children_ids: list[str]


def apply_patch(event: Event, patch: EventPatch) -> None:
    """Apply ``patch`` to ``event`` in place (HoneyHive ``PUT /events`` semantics).

    Object fields in :data:`PATCH_MERGE_FIELDS` are shallow-merged (the patch's keys win);
    ``outputs``, ``duration``, ``end_time`` and a non-empty ``children_ids`` replace the
    event's. A patch that sets ``end_time`` but not ``duration`` recomputes the duration
    from the event's start. Applying the same patches again, in the same order, changes
    nothing: the result depends only on the event before the first patch and the patches.
    """
    target: dict[str, Any] = event  # type: ignore[assignment]
    source: dict[str, Any] = patch  # type: ignore[assignment]
    for name in PATCH_MERGE_FIELDS:
        value = source.get(name)
        if value:
            target[name] = {**target[name], **value}
    if "outputs" in patch:
        event["outputs"] = dict(patch["outputs"])
    children = patch.get("children_ids")
    if children:
        event["children_ids"] = list(children)
    if "duration" in patch:
        event["duration"] = float(patch["duration"])
    if "end_time" in patch:
        event["end_time"] = float(patch["end_time"])
        if "duration" not in patch and 0 < event["start_time"] <= event["end_time"]:
            event["duration"] = event["end_time"] - event["start_time"]


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
