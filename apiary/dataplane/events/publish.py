"""REST requests → events and patches on JetStream (the API never writes ClickHouse).

Created events travel as batches of kind ``api`` (the writers enrich and store them like
spans); updates as batches of kind ``updates`` carrying one :class:`EventPatch` each. Both
are acknowledged by JetStream before the request is answered. A create's
``Nats-Msg-Id`` is a hash of the project, the ids the events are stored under (the client's
``event_id``) and what the client sent (:func:`request_key`), never of a value the server
filled in (``start_time`` defaults to the time of arrival): a client retrying a create it
got no answer for sends the same message again, which JetStream drops within its
duplicate window, so the event is stored and counted once. A patch's id includes its
version (time of acceptance), because the same update sent again after another one must
apply again.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.requests import Request

from apiary._private import metrics
from apiary.dataplane.auth import Permission, Principal
from apiary.dataplane.events.schemas import EventIn, SessionIn, SessionProperties
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.errors import InvalidRequest, PayloadTooLarge
from apiary.event import API_KIND, UPDATES_KIND, Event, EventBatch, EventPatch, Tenant, new_event
from apiary.queue import WIRE_SCHEMA
from apiary.ratelimit import admit

UNKNOWN = "unknown"


def now_ms() -> float:
    return time.time_ns() / 1e6


def new_id() -> str:
    return str(uuid.uuid4())


def tenant_of(principal: Principal) -> Tenant:
    return {"org_id": principal.org_id, "workspace_id": principal.workspace_id,
            "project_id": principal.project_id}


async def writer_principal(context: DataPlaneContext, request: Request) -> Principal:
    """Authenticate a write (``events:write``), apply the credential's rate limit and the
    body size limit (413)."""
    principal = await context.principal(request, Permission.EVENTS_WRITE)
    await admit(context.ingest_limiter, principal.subject)
    declared = request.headers.get("content-length")
    limit = context.settings.ingest_max_body_bytes
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge("request body is too large", size=int(declared), limit=limit)
    return principal


def _times(start: float | None, end: float | None, duration: float | None,
           now: float) -> tuple[float, float, float]:
    begin = start if start is not None else now
    if end is None:
        end = begin + (duration or 0.0)
    if duration is None:
        duration = max(0.0, end - begin)
    return begin, end, duration


def session_event(session: SessionIn, *, now: float) -> Event:
    """The session event of a session start; its ``event_id`` is the session id."""
    session_id = session.session_id or new_id()
    start, end, duration = _times(session.start_time, session.end_time, session.duration, now)
    return new_event(
        event_id=session_id, session_id=session_id, parent_id=None, event_type="session",
        event_name=session.session_name or session.event_name or UNKNOWN,
        source=session.source or UNKNOWN, config=session.config or {},
        inputs=session.inputs or {}, outputs=session.outputs or {},
        metadata=session.metadata or {}, user_properties=session.user_properties or {},
        children_ids=list(session.children_ids or []),
        start_time=start, end_time=end, duration=duration,
    )


def batch_session(session_id: str, props: SessionProperties | None, events: Sequence[Event],
                  *, now: float) -> Event:
    """The session a single-session batch starts (or merges into, if it exists)."""
    props = props or SessionProperties()
    starts = [e["start_time"] for e in events if e["start_time"]]
    ends = [e["end_time"] for e in events if e["end_time"]]
    start = props.start_time if props.start_time is not None else min(starts, default=now)
    end = max([start, *ends])
    return new_event(
        event_id=session_id, session_id=session_id, parent_id=None, event_type="session",
        event_name=props.session_name or UNKNOWN, source=UNKNOWN,
        metadata=props.metadata or {}, user_properties=props.user_properties or {},
        start_time=start, end_time=end, duration=end - start,
    )


def event_from(item: EventIn, *, now: float, session_id: str | None = None) -> Event:
    """An :class:`Event` from a REST event, defaults filled in (see :class:`EventIn`).

    ``session_id`` (a single-session batch, or the session of the URL) overrides the
    event's own.
    """
    is_session = item.event_type == "session"
    session = session_id or item.session_id
    if is_session:
        if item.event_id and session and item.event_id != session:
            raise InvalidRequest("a session event's event_id must be its session_id",
                                 field="event_id")
        event_id = session = session or item.event_id or new_id()
        parent: str | None = item.parent_id
    else:
        event_id = item.event_id or new_id()
        session = session or new_id()
        parent = item.parent_id or session
    if parent == event_id:
        parent = None
    start, end, duration = _times(item.start_time, item.end_time, item.duration, now)
    return new_event(
        event_id=event_id, session_id=session, parent_id=parent, event_type=item.event_type,
        event_name=item.event_name or UNKNOWN, source=item.source or UNKNOWN,
        children_ids=list(item.children_ids or []), config=item.config or {},
        inputs=item.inputs or {}, outputs=item.outputs or {}, error=item.error,
        start_time=start, end_time=end, duration=duration, metadata=item.metadata or {},
        feedback=item.feedback or {}, metrics=item.metrics or {},
        user_properties=item.user_properties or {},
    )


def _digest(project_id: str, person: bytes, content: Any) -> str:
    """The ``Nats-Msg-Id`` of ``content``; a value JSON cannot carry on is a 400."""
    try:
        data = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
        raise InvalidRequest(f"a value cannot be stored: {exc}") from None
    digest = hashlib.blake2b(data, digest_size=16, person=person)
    digest.update(project_id.encode())
    return digest.hexdigest()


def request_key(events: Sequence[Event], *sent: BaseModel | None) -> dict[str, Any]:
    """What identifies a create request: the (event, session) ids its events are stored
    under and the request models as the client sent them (fields it left out stay out,
    so defaults the server fills in, such as the time of arrival, do not change it)."""
    return {"ids": [[e["event_id"], e["session_id"]] for e in events],
            "sent": [None if m is None else m.model_dump(mode="json", exclude_unset=True)
                     for m in sent]}


async def publish_events(context: DataPlaneContext, principal: Principal,
                         events: list[Event], *, key: dict[str, Any]) -> None:
    """Publish REST-created events; returns once JetStream has them (durable).

    ``key`` (:func:`request_key`) identifies the request: the same key published again
    within the stream's duplicate window is dropped by JetStream, so a retried create is
    one message, one stored event and counted once in its session's sums.
    """
    tenant = tenant_of(principal)
    batch: EventBatch = {"schema": WIRE_SCHEMA, "kind": API_KIND, "tenant": tenant,
                         "version": time.time_ns(), "events": events}
    msg_id = _digest(tenant["project_id"], b"apiary-rest-v2", key)
    with context.admit():
        started = time.perf_counter()
        await context.publisher.publish(batch, msg_id=msg_id)
        metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)


async def publish_patch(context: DataPlaneContext, principal: Principal, event_id: str,
                        fields: dict[str, Any]) -> bool:
    """Publish an update of ``event_id``; False (nothing sent) when it sets nothing."""
    if not fields:
        return False
    tenant = tenant_of(principal)
    version = time.time_ns()
    patch: EventPatch = {**fields, "event_id": event_id, "version": version}  # type: ignore[typeddict-item]
    batch: EventBatch = {"schema": WIRE_SCHEMA, "kind": UPDATES_KIND, "tenant": tenant,
                         "version": version, "events": [], "patches": [patch]}
    msg_id = _digest(tenant["project_id"], b"apiary-patch-v1", patch)
    with context.admit():
        await context.publisher.publish(batch, msg_id=msg_id)
    return True
