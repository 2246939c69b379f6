"""Pydantic models of the data plane's request and response bodies (the OpenAPI spec).

Requests forbid unknown fields, so a typo is a 400 naming it rather than a silently
ignored filter. Fields the HoneyHive SDK still sends but that mean nothing here
(``project``: the project comes from the credential) are accepted and ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EventFilter(_Request):
    """One condition: ``field`` (a column, or a nested path such as ``metadata.user_id``)
    ``operator`` (``is``, ``is not``, ``contains``, ``not contains``, ``exists``,
    ``not exists``, ``greater than``, ``less than``, ...) ``value``, typed by ``type``
    (``string``, ``number``, ``boolean``, ``datetime``, ``id``)."""

    field: str = Field(min_length=1, max_length=256)
    operator: str = Field(min_length=1, max_length=64)
    value: str | float | bool | None = None
    type: str | None = None


class DateRange(_Request):
    """Bounds on ``start_time``: ISO 8601 strings or epoch milliseconds."""

    gte: str | float | None = Field(default=None, alias="$gte")
    lte: str | float | None = Field(default=None, alias="$lte")


class ExportRequest(_Request):
    """``POST /v1/events/export`` (HoneyHive shape)."""

    filters: list[EventFilter] = Field(default_factory=list, max_length=100)
    dateRange: DateRange | None = None
    projections: list[str] | None = Field(default=None, max_length=100)
    limit: int | None = Field(default=None, ge=1)
    page: int | None = Field(default=None, ge=1)
    cursor: str | None = Field(
        default=None, max_length=1024,
        description="next_cursor of the previous page: continue after it (instead of page; "
        "as fast on any page).")
    project: str | None = Field(default=None, description="Ignored: the key names the project.")
    ignore_order: bool | None = Field(default=None, description="Accepted; order is stable.")
    evaluation_id: str | None = None
    sort_by: Literal["start_time", "duration", "cost", "total_tokens"] | None = Field(
        default=None, description="Order of the events (default start_time); ties are "
        "broken by event_id. A cursor continues only the order it was issued in.")
    sort_order: Literal["asc", "desc"] | None = Field(
        default=None, description="asc (the default) or desc.")
    search: str | None = Field(
        default=None, max_length=256, description="Case-insensitive text the event's name, "
        "inputs or outputs contain (in addition to the filters).")

    def to_query(self) -> dict[str, Any]:
        return export_query(self.filters, self.dateRange, self.evaluation_id,
                            projections=self.projections, limit=self.limit, page=self.page,
                            cursor=self.cursor, sort_by=self.sort_by,
                            sort_order=self.sort_order, search=self.search or None)


def export_query(filters: list[EventFilter], date_range: BaseModel | None,
                 evaluation_id: str | None, **paging: Any) -> dict[str, Any]:
    """The store's export query of a request's ``filters``, ``date_range`` (dumped by its
    ``$gte``/``$lte`` aliases), ``evaluation_id`` (a filter on ``metadata.run_id``) and the
    ``paging`` values that are set."""
    query: dict[str, Any] = {"filters": [f.model_dump() for f in filters]}
    if evaluation_id:
        query["filters"].append({"field": "metadata.run_id", "operator": "is",
                                 "value": evaluation_id, "type": "string"})
    if date_range is not None:
        query["dateRange"] = date_range.model_dump(by_alias=True, exclude_none=True)
    query.update((name, value) for name, value in paging.items() if value is not None)
    return query


class EventOut(BaseModel):
    """An event as the API returns it (times are epoch milliseconds)."""

    model_config = ConfigDict(extra="allow")

    event_id: str
    session_id: str | None = None
    parent_id: str | None = None
    children_ids: list[str] | None = None
    event_type: str | None = None
    event_name: str | None = None
    source: str | None = None
    project_id: str | None = None
    config: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    error: str | None = None
    start_time: float | None = None
    end_time: float | None = None
    duration: float | None = None
    metadata: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    feedback: dict[str, Any] | None = None
    user_properties: dict[str, Any] | None = None


class _NextCursor(BaseModel):
    """A page that may have a successor carries ``next_cursor``; the key is left out
    otherwise, so a last page reads exactly as it did before cursors existed."""

    next_cursor: str | None = None

    # No return annotation on purpose: pydantic would take it (``dict[str, Any]``) as the
    # serialized schema and publish every page as a bare object in the OpenAPI spec; without
    # one the spec shows the model's fields (the web UI's generated types rely on them).
    @model_serializer(mode="wrap")
    def _omit_absent_cursor(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data: dict[str, Any] = handler(self)
        if data.get("next_cursor") is None:
            data.pop("next_cursor", None)
        return data


class ExportResponse(_NextCursor):
    events: list[EventOut]
    totalEvents: int = Field(description="Events matching the filters, on all pages.")
    count: int = Field(description="Same as totalEvents (older clients read this name).")
    next_cursor: str | None = Field(
        default=None, description="Send back as cursor for the next page; absent after a "
        "page that is not full (the last one).")


class EventNode(EventOut):
    children: list[EventNode] = Field(default_factory=list)
    synthetic: bool = Field(
        default=False,
        description="True for the root of a session that has no session event: it stands "
        "for the session and is not itself an event.",
    )


class SessionTreeResponse(BaseModel):
    """A session with its events nested under their parents."""

    session_id: str
    event_count: int
    session: EventNode


class SessionSummary(BaseModel):
    session_id: str
    session_name: str | None = None
    source: str | None = None
    user_properties: dict[str, Any] = Field(default_factory=dict)
    start_time: float | None = None
    end_time: float | None = None
    duration: float = 0.0
    event_count: int
    error_count: int
    model_call_count: int
    cost: float
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class SessionListResponse(_NextCursor):
    sessions: list[SessionSummary]
    totalSessions: int
    page: int
    limit: int
    next_cursor: str | None = Field(
        default=None, description="Pass as cursor for the next page; absent after a page "
        "that is not full (the last one).")


class EventCountResponse(BaseModel):
    rows: int = Field(description="Stored rows: every version (and any duplicate) counts.")
    events: int | None = Field(
        default=None, description="Distinct events (only with exact=true: it costs a scan).")
