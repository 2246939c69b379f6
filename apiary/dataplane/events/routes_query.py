"""Reading events back: the export API, a session's event tree, and the session list.

Every read is scoped to the caller's project (from its credential) and collapses event
versions, so a retried or redelivered batch never shows twice.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from starlette.requests import Request

from apiary.dataplane.auth import Permission
from apiary.dataplane.events.schemas_read import (
    EventCountResponse,
    ExportRequest,
    ExportResponse,
    SessionListResponse,
    SessionTreeResponse,
)
from apiary.dataplane.replica.context import context_of
from apiary.web.errors import ErrorResponse

router = APIRouter(tags=["events"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid request"},
    401: {"model": ErrorResponse, "description": "Missing or unknown credentials"},
    403: {"model": ErrorResponse, "description": "Credentials may not read events"},
    404: {"model": ErrorResponse, "description": "Not found in this project"},
    503: {"model": ErrorResponse, "description": "Store unavailable; retry"},
}


@router.post("/v1/events/export", response_model=ExportResponse, responses=_ERRORS,
             summary="Export events matching filters (HoneyHive shape)")
async def export_events(request: Request, body: ExportRequest) -> dict[str, Any]:
    context = context_of(request)
    principal = await context.principal(request, Permission.EVENTS_READ)
    result = await context.store.export(principal.project_id, body.to_query())
    return {"events": result["events"], "totalEvents": result["totalEvents"],
            "count": result["totalEvents"], "next_cursor": result.get("next_cursor")}


@router.get("/v1/sessions/{session_id}", response_model=SessionTreeResponse,
            responses=_ERRORS, summary="A session with its event tree")
async def get_session(request: Request, session_id: str) -> dict[str, Any]:
    context = context_of(request)
    principal = await context.principal(request, Permission.EVENTS_READ)
    root = await context.store.session_tree(principal.project_id, session_id)
    nodes, stack = 0, [root]
    while stack:
        node = stack.pop()
        nodes += 1
        stack.extend(node["children"])
    # A session without a session event is rooted at a synthetic node that is no event.
    events = nodes - 1 if root.get("synthetic") else nodes
    return {"session_id": session_id, "event_count": events, "session": root}


@router.get("/v1/sessions", response_model=SessionListResponse, responses=_ERRORS,
            summary="Sessions of the project, newest first (or in sort_by order)")
async def list_sessions(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    page: Annotated[int, Query(ge=1)] = 1,
    start: Annotated[str | None, Query(description="ISO time or epoch ms, inclusive")] = None,
    end: Annotated[str | None, Query(description="ISO time or epoch ms, inclusive")] = None,
    cursor: Annotated[str | None, Query(
        max_length=1024, description="next_cursor of the previous page (instead of page)"
    )] = None,
    sort_by: Annotated[Literal["start_time", "duration", "cost", "total_tokens"] | None, Query(
        description="Order of the sessions (default start_time); ties by session_id")] = None,
    sort_order: Annotated[Literal["asc", "desc"] | None, Query(
        description="desc (the default) or asc")] = None,
) -> dict[str, Any]:
    context = context_of(request)
    principal = await context.principal(request, Permission.EVENTS_READ)
    date_range = {k: v for k, v in (("$gte", start), ("$lte", end)) if v is not None}
    result = await context.store.list_sessions(
        principal.project_id, limit=limit, page=page, date_range=date_range or None,
        cursor=cursor, sort_by=sort_by, sort_order=sort_order,
    )
    return {**result, "page": page, "limit": limit}


@router.get("/v1/events/count", response_model=EventCountResponse, responses=_ERRORS,
            summary="How many rows and events the project has stored")
async def count_events(
    request: Request,
    exact: Annotated[bool, Query(description="Also count distinct events (a scan)")] = False,
) -> dict[str, Any]:
    context = context_of(request)
    principal = await context.principal(request, Permission.EVENTS_READ)
    result: dict[str, Any] = {"rows": await context.store.count_rows(principal.project_id)}
    if exact:
        result["events"] = await context.store.count_events(principal.project_id)
    return result
