"""Request and response bodies of the session and event endpoints (HoneyHive-compatible).

Mirrors the models of the HoneyHive SDK (``honeyhive/_generated/models``): requests forbid
unknown fields, so a typo is a 400 naming it. Fields the SDK sends that mean nothing here
are accepted and ignored: ``project`` and ``project_id`` (the credential names the
project). Times are epoch milliseconds.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from apiary.dataplane.events.schemas_read import EventFilter, EventOut, export_query
from apiary.event import EVENT_TYPES

#: An id (event, session, parent): 1-256 characters, no control characters.
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
Id = Annotated[str, Field(min_length=1, max_length=256, pattern=ID_PATTERN)]
PathId = Annotated[str, Path(min_length=1, max_length=256, pattern=ID_PATTERN)]
#: Epoch milliseconds or a duration in milliseconds: finite, not negative.
Millis = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Name = Annotated[str, Field(max_length=1024)]
Object = dict[str, Any]

MAX_BATCH_EVENTS = 10_000
_IGNORED = "Ignored: the API key names the project."


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- sessions ------------------------------------------------------------------------------


class SessionIn(_Request):
    """A session to start (``POST /v1/sessions``; ``session`` of ``POST /session/start``).

    ``session_id`` is generated (a UUID) when absent; the session event's ``event_id`` is
    the session id. Starting a session whose id exists merges into it (metadata, user
    properties, config, inputs: key by key) instead of replacing it.
    """

    session_id: Id | None = None
    session_name: Name | None = None
    event_name: Name | None = None
    source: Name | None = None
    start_time: Millis | None = None
    end_time: Millis | None = None
    duration: Millis | None = None
    config: Object | None = None
    inputs: Object | None = None
    outputs: Object | None = None
    metadata: Object | None = None
    user_properties: Object | None = None
    children_ids: list[Id] | None = None
    project: str | None = Field(default=None, description=_IGNORED)


class StartSessionRequest(_Request):
    """``POST /session/start``."""

    session: SessionIn


class StartSessionResponse(BaseModel):
    """Exactly what ``POST /session/start`` answers (the SDK reads ``session_id``)."""

    event_id: str
    session_id: str
    org_id: str
    workspace_id: str
    project_id: str


class SessionEventOut(EventOut):
    """The session event as ``POST /v1/sessions`` answers it (before any merge)."""

    session_id: str
    org_id: str
    workspace_id: str
    project_id: str


# --- events --------------------------------------------------------------------------------


class EventIn(_Request):
    """An event to create. Defaults: ``event_id`` a UUID; ``session_id`` a new session (the
    event's own id for a session event); ``parent_id`` the session id; ``event_name`` and
    ``source`` ``"unknown"``; ``start_time`` now; ``end_time`` the start plus ``duration``."""

    event_type: str = Field(description="session, chain, tool, model or generic")
    event_id: Id | None = None
    session_id: Id | None = None
    parent_id: Id | None = None
    children_ids: list[Id] | None = None
    event_name: Name | None = None
    source: Name | None = None
    config: Object | None = None
    inputs: Object | None = None
    outputs: Object | None = None
    error: str | None = None
    start_time: Millis | None = None
    end_time: Millis | None = None
    duration: Millis | None = None
    metadata: Object | None = None
    feedback: Object | None = None
    metrics: Object | None = None
    user_properties: Object | None = None
    project: str | None = Field(default=None, description=_IGNORED)
    project_id: str | None = Field(default=None, description=_IGNORED)

    @field_validator("event_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in EVENT_TYPES:
            raise ValueError(f"must be one of {', '.join(sorted(EVENT_TYPES))}")
        return value


class EventCreateIn(EventIn):
    """An event of ``POST /events`` and ``POST /v1/events``: ``inputs`` is required."""

    inputs: Object


class CreateEventRequest(_Request):
    """``POST /events``."""

    event: EventCreateIn


class CreateEventResponse(BaseModel):
    success: bool
    event_id: str


class SessionProperties(_Request):
    """The session an ``is_single_session`` batch creates for its events."""

    session_name: Name | None = None
    start_time: Millis | None = None
    user_properties: Object | None = None
    metadata: Object | None = None


class EventBatchRequest(_Request):
    """``POST /events/batch``. With ``is_single_session`` (or ``single_session``) every
    event joins one session (the events' own if they name one, else a new one), started
    with ``session_properties`` (or ``session``)."""

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)
    single_session: bool | None = None
    is_single_session: bool | None = None
    session: SessionProperties | None = None
    session_properties: SessionProperties | None = None


class V1EventBatchRequest(_Request):
    """``POST /v1/events/batch``."""

    events: list[EventCreateIn] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)
    single_session: bool | None = None
    session_properties: SessionProperties | None = None


class EventBatchResponse(BaseModel):
    event_ids: list[str]
    success: bool
    session_id: str | None = None


class SessionEventBatchRequest(_Request):
    """``POST /v1/sessions/{session_id}/events/batch``: events of that session."""

    events: list[EventCreateIn] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class SessionTracesRequest(_Request):
    """``POST /session/{session_id}/traces``: exactly one of ``events`` or ``logs``."""

    logs: list[EventIn] | None = Field(default=None, max_length=MAX_BATCH_EVENTS)
    events: list[EventIn] | None = Field(default=None, max_length=MAX_BATCH_EVENTS)

    @model_validator(mode="after")
    def _exactly_one(self) -> SessionTracesRequest:
        if (self.logs is None) == (self.events is None):
            raise ValueError("send exactly one of 'events' or 'logs'")
        return self


class SessionTracesResponse(BaseModel):
    success: bool
    event_ids: list[str] = Field(default_factory=list)


# --- updates -------------------------------------------------------------------------------


class EventUpdate(_Request):
    """``PUT /v1/events/{event_id}``. ``metadata``, ``feedback``, ``metrics``, ``config``
    and ``user_properties`` are merged into the event key by key; ``outputs``,
    ``duration``, ``end_time`` and a non-empty ``children_ids`` replace the event's.
    Updates apply in the order they were accepted, also when they arrive before the
    event itself."""

    metadata: Object | None = None
    feedback: Object | None = None
    metrics: Object | None = None
    outputs: Object | None = None
    config: Object | None = None
    user_properties: Object | None = None
    duration: Millis | None = None
    end_time: Millis | None = None
    children_ids: list[Id] | None = None

    def patch_fields(self) -> dict[str, Any]:
        """The fields this update sets (an empty ``children_ids`` sets nothing)."""
        fields = self.model_dump(exclude_none=True, exclude={"event_id"})
        if not fields.get("children_ids", True):
            del fields["children_ids"]
        return fields


class UpdateEventRequest(EventUpdate):
    """``PUT /events``: the event to update by id (a session's id updates the session)."""

    event_id: Id


class UpdateEventResponse(BaseModel):
    success: bool
    event_id: str


class GetEventResponse(BaseModel):
    event: EventOut


# --- search and schema ---------------------------------------------------------------------


class SearchDateRange(_Request):
    """Bounds on ``start_time``: ISO 8601 strings or epoch milliseconds."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start_time: str | float | None = Field(default=None, alias="$gte")
    end_time: str | float | None = Field(default=None, alias="$lte")


class SearchEventsRequest(_Request):
    """``POST /v1/events/search``: the export's filters (every operator, nested fields such
    as ``metadata.user_id``), paged."""

    filters: list[EventFilter] = Field(default_factory=list, max_length=100)
    dateRange: SearchDateRange | None = None
    projections: list[str] | None = Field(default=None, max_length=100)
    limit: int | None = Field(default=None, ge=1)
    page: int | None = Field(default=None, ge=1)
    cursor: str | None = Field(default=None, max_length=1024,
                               description="next_cursor of the previous page (instead of page).")
    ignore_order: bool | None = None
    evaluation_id: str | None = None

    def to_query(self) -> dict[str, Any]:
        return export_query(self.filters, self.dateRange, self.evaluation_id,
                            projections=self.projections, limit=self.limit, page=self.page,
                            cursor=self.cursor)


class SchemaField(BaseModel):
    name: str
    event_type: str


class SchemaFieldDetail(SchemaField):
    event_name: str
    value_type: str = Field(description="string, number, boolean, array, object or null")
    occurrences: int
    first_seen: float | None = Field(description="epoch ms")
    last_seen: float | None = Field(description="epoch ms")


class SchemaEventName(BaseModel):
    event_type: str
    event_name: str
    event_count: int
    first_seen: float | None = None
    last_seen: float | None = None


class EventSchemaResponse(BaseModel):
    """``GET /v1/events/schema``: HoneyHive's ``fields``/``datasets``/``mappings``, and the
    detail behind them (per event name, value types, counts, first and last seen)."""

    fields: list[SchemaField]
    datasets: list[str]
    mappings: dict[str, list[dict[str, str]]]
    details: list[SchemaFieldDetail]
    events: list[SchemaEventName]
