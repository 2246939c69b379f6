"""Starting sessions and adding events to them (HoneyHive-compatible).

``POST /session/start`` (the SDK's tracer and ``evaluate()``) and ``POST /v1/sessions``
start a session: a session event whose ``event_id`` is the session id, published to
JetStream and stored by the writers. Both are idempotent on ``session_id``: starting an
existing session merges the new metadata, user properties, config and inputs into it
(the writer turns the second start into an update), it never creates a second session.
``POST /session/{id}/traces`` and ``POST /v1/sessions/{id}/events/batch`` add events to a
session. Tenancy always comes from the credential.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request

from apiary.dataplane.events.publish import (
    event_from,
    now_ms,
    publish_events,
    request_key,
    session_event,
    tenant_of,
    writer_principal,
)
from apiary.dataplane.events.schemas import (
    EventIn,
    PathId,
    SessionEventBatchRequest,
    SessionEventOut,
    SessionIn,
    SessionTracesRequest,
    SessionTracesResponse,
    StartSessionRequest,
    StartSessionResponse,
)
from apiary.dataplane.replica.context import context_of
from apiary.event import Event
from apiary.web.errors import ErrorResponse

router = APIRouter(tags=["sessions"])

WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid request (message names the field)"},
    401: {"model": ErrorResponse, "description": "Missing or unknown credentials"},
    403: {"model": ErrorResponse, "description": "Credentials may not write events"},
    413: {"model": ErrorResponse, "description": "Body too large"},
    429: {"model": ErrorResponse, "description": "Rate limited or replica busy; Retry-After"},
    503: {"model": ErrorResponse, "description": "Pipeline full or queue unavailable"},
}


async def _start(request: Request, session: SessionIn) -> tuple[Event, dict[str, str]]:
    context = context_of(request)
    principal = await writer_principal(context, request)
    event = session_event(session, now=now_ms())
    await publish_events(context, principal, [event], key=request_key([event], session))
    tenant = tenant_of(principal)
    return event, {"event_id": event["event_id"], "session_id": event["session_id"],
                   "org_id": tenant["org_id"], "workspace_id": tenant["workspace_id"],
                   "project_id": tenant["project_id"]}


@router.post("/session/start", response_model=StartSessionResponse, responses=WRITE_ERRORS,
             summary="Start a session (HoneyHive SDK path)")
async def start_session(request: Request, body: StartSessionRequest) -> dict[str, str]:
    _, ids = await _start(request, body.session)
    return ids


@router.post("/v1/sessions", response_model=SessionEventOut, responses=WRITE_ERRORS,
             summary="Start a session, or merge into the session with this session_id")
async def create_session(request: Request, body: SessionIn) -> dict[str, Any]:
    event, ids = await _start(request, body)
    return {**event, **ids}


async def _add(request: Request, session_id: str, items: list[EventIn]) -> list[str]:
    context = context_of(request)
    principal = await writer_principal(context, request)
    now = now_ms()
    events = [event_from(item, now=now, session_id=session_id) for item in items]
    await publish_events(context, principal, events, key=request_key(events, *items))
    return [e["event_id"] for e in events]


@router.post("/session/{session_id}/traces", response_model=SessionTracesResponse,
             responses=WRITE_ERRORS, summary="Add events to a session (deprecated path)")
async def add_session_traces(request: Request, session_id: PathId,
                             body: SessionTracesRequest) -> dict[str, Any]:
    items = body.events if body.events is not None else body.logs or []
    return {"success": True, "event_ids": await _add(request, session_id, list(items))}


@router.post("/v1/sessions/{session_id}/events/batch", response_model=SessionTracesResponse,
             responses=WRITE_ERRORS, summary="Add a batch of events to a session")
async def add_session_events(request: Request, session_id: PathId,
                             body: SessionEventBatchRequest) -> dict[str, Any]:
    return {"success": True,
            "event_ids": await _add(request, session_id, list(body.events))}
