"""Creating, updating, reading and searching events (HoneyHive-compatible).

Writes go through JetStream to the writers, like spans: created events as ``api``
batches, updates as patches (``updates`` batches) that the writers merge into the stored
event as a new version, also when the update arrives before the event. Reads see the
newest version of each event, so a filter on an updated field matches the update.
Tenancy always comes from the credential: an id of another project is simply not found
(reads) or never applied (updates, which are stored under the caller's project).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request

from apiary.dataplane.auth import Permission
from apiary.dataplane.events.publish import (
    batch_session,
    event_from,
    new_id,
    now_ms,
    publish_events,
    publish_patch,
    request_key,
    writer_principal,
)
from apiary.dataplane.events.routes_sessions import WRITE_ERRORS
from apiary.dataplane.events.schemas import (
    CreateEventRequest,
    CreateEventResponse,
    EventBatchRequest,
    EventBatchResponse,
    EventCreateIn,
    EventIn,
    EventUpdate,
    GetEventResponse,
    PathId,
    SearchEventsRequest,
    SessionProperties,
    UpdateEventRequest,
    UpdateEventResponse,
    V1EventBatchRequest,
)
from apiary.dataplane.events.schemas_read import ExportResponse
from apiary.dataplane.replica.context import context_of
from apiary.event import Event
from apiary.web.errors import ErrorResponse

router = APIRouter(tags=["events"])

READ_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid request (message names the field)"},
    401: {"model": ErrorResponse, "description": "Missing or unknown credentials"},
    403: {"model": ErrorResponse, "description": "Credentials may not read events"},
    404: {"model": ErrorResponse, "description": "No such event in this project"},
    503: {"model": ErrorResponse, "description": "Store unavailable; retry"},
}


# --- create --------------------------------------------------------------------------------


async def _create_one(request: Request, item: EventCreateIn) -> dict[str, Any]:
    context = context_of(request)
    principal = await writer_principal(context, request)
    event = event_from(item, now=now_ms())
    await publish_events(context, principal, [event], key=request_key([event], item))
    return {"success": True, "event_id": event["event_id"]}


@router.post("/events", response_model=CreateEventResponse, responses=WRITE_ERRORS,
             summary="Create an event (deprecated path; body wraps it in 'event')")
async def create_event_legacy(request: Request, body: CreateEventRequest) -> dict[str, Any]:
    return await _create_one(request, body.event)


@router.post("/v1/events", response_model=CreateEventResponse, responses=WRITE_ERRORS,
             summary="Create an event")
async def create_event(request: Request, body: EventCreateIn) -> dict[str, Any]:
    return await _create_one(request, body)


async def _create_batch(request: Request, items: list[EventIn], *, single: bool,
                        props: SessionProperties | None) -> dict[str, Any]:
    context = context_of(request)
    principal = await writer_principal(context, request)
    now = now_ms()
    session_id: str | None = None
    if single:
        session_id = next((i.session_id for i in items if i.session_id), None) or new_id()
    events = [event_from(item, now=now, session_id=session_id) for item in items]
    stored: list[Event] = list(events)
    if session_id is not None and not any(e["event_type"] == "session" for e in events):
        stored.insert(0, batch_session(session_id, props, events, now=now))
    await publish_events(context, principal, stored,
                         key=request_key(stored, *items, props))
    answer: dict[str, Any] = {"event_ids": [e["event_id"] for e in events], "success": True}
    if session_id is not None:
        answer["session_id"] = session_id
    return answer


@router.post("/events/batch", response_model=EventBatchResponse,
             response_model_exclude_none=True, responses=WRITE_ERRORS,
             summary="Create events (deprecated path)")
async def create_event_batch_legacy(request: Request, body: EventBatchRequest) -> dict[str, Any]:
    single = bool(body.is_single_session or body.single_session)
    return await _create_batch(request, list(body.events), single=single,
                               props=body.session_properties or body.session)


@router.post("/v1/events/batch", response_model=EventBatchResponse,
             response_model_exclude_none=True, responses=WRITE_ERRORS,
             summary="Create events")
async def create_event_batch(request: Request, body: V1EventBatchRequest) -> dict[str, Any]:
    return await _create_batch(request, list(body.events), single=bool(body.single_session),
                               props=body.session_properties)


# --- update --------------------------------------------------------------------------------


async def _update(request: Request, event_id: str, body: EventUpdate) -> dict[str, Any]:
    context = context_of(request)
    principal = await writer_principal(context, request)
    await publish_patch(context, principal, event_id, body.patch_fields())
    return {"success": True, "event_id": event_id}


@router.put("/events", response_model=UpdateEventResponse, responses=WRITE_ERRORS,
            summary="Update an event or a session (by its session id)")
async def update_event_legacy(request: Request, body: UpdateEventRequest) -> dict[str, Any]:
    return await _update(request, body.event_id, body)


@router.put("/v1/events/{event_id}", response_model=UpdateEventResponse,
            responses=WRITE_ERRORS, summary="Update an event or a session (by its session id)")
async def update_event(request: Request, event_id: PathId, body: EventUpdate) -> dict[str, Any]:
    return await _update(request, event_id, body)


# --- read ----------------------------------------------------------------------------------


@router.post("/v1/events/search", response_model=ExportResponse, responses=READ_ERRORS,
             summary="Search events with filters (the export's filter language)")
async def search_events(request: Request, body: SearchEventsRequest) -> dict[str, Any]:
    context = context_of(request)
    principal = await context.principal(request, Permission.EVENTS_READ)
    result = await context.store.export(principal.project_id, body.to_query())
    return {"events": result["events"], "totalEvents": result["totalEvents"],
            "count": result["totalEvents"], "next_cursor": result.get("next_cursor")}


@router.get("/v1/events/{event_id}", response_model=GetEventResponse, responses=READ_ERRORS,
            summary="One event (its newest version, updates merged)")
async def get_event(request: Request, event_id: PathId) -> dict[str, Any]:
    context = context_of(request)
    principal = await context.principal(request, Permission.EVENTS_READ)
    return {"event": await context.store.get_event(principal.project_id, event_id)}
