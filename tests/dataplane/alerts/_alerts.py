"""Helpers of the alert evaluator tests: a fresh topology and buckets, rules and served
projects written into the federation buckets as the federation's applier writes them,
webhook channels, events stored at chosen times, and waits.

Test modules import these by name (a test module never imports a ``conftest``)."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import orjson
from _notification_receivers import Receiver, Receivers
from _waits import until
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError

from apiary.dataplane.alerts.events import AlertActivity, parse_activity
from apiary.dataplane.alerts.state import STATE_BUCKET
from apiary.dataplane.evaluation.proxy.envelope import envelope_from_settings
from apiary.dataplane.federation.apply import key_token
from apiary.dataplane.notifications.channels import channel_entry
from apiary.dataplane.notifications.deliveries import DELIVERIES_BUCKET
from apiary.dataplane.replica.federation_state import CONFIG_BUCKET, PROJECTS_KEY
from apiary.dataplane.replica.federation_state import STATE_BUCKET as FEDERATION_STATE
from apiary.event import Event, new_event
from apiary.queue import ALERT_ACTIVITY_STREAM, ensure_topology
from apiary.settings import ApiarySettings

__all__ = ["SECRET", "activities", "error_events", "fresh", "put_rule", "received", "serve",
           "until", "webhook"]

SECRET = "whsec-0123456789abcdef"
STREAMS = ("events", "evaluation", "notifications", ALERT_ACTIVITY_STREAM)
BUCKETS = (CONFIG_BUCKET, FEDERATION_STATE, DELIVERIES_BUCKET, STATE_BUCKET)


async def fresh(nc: Client, settings: ApiarySettings) -> None:
    """Streams, consumers and buckets as ``settings`` make them, empty."""
    js = nc.jetstream()
    for stream in STREAMS:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    for bucket in BUCKETS:
        with contextlib.suppress(BucketNotFoundError, NotFoundError):
            await js.delete_key_value(bucket)
    await ensure_topology(js, settings)
    for bucket in (CONFIG_BUCKET, FEDERATION_STATE):
        await js.create_key_value(KeyValueConfig(bucket=bucket, history=1,
                                                 storage=StorageType.FILE))


async def serve(nc: Client, projects: dict[str, tuple[str, str]]) -> None:
    """The served projects (``project_assigned`` payloads): project → (org, workspace)."""
    kv = await nc.jetstream().key_value(FEDERATION_STATE)
    await kv.put(PROJECTS_KEY, orjson.dumps({"projects": {
        p: {"project_id": p, "org_id": org, "workspace_id": ws, "name": p}
        for p, (org, ws) in projects.items()}}))


async def put_rule(nc: Client, project: str, alert_id: str, *, version: int = 1,
                   paused: bool = False, muted: bool = False, name: str = "Error rate",
                   evaluation_state: str | None = None, state_changed_at: str | None = None,
                   **condition: Any) -> None:
    """An ``alert_rule`` entry as the applier writes it (the alert as the API returns it)."""
    cond = {"type": "aggregate", "field": "error_rate", "filters": [], "window_s": 60,
            "warning": {"op": ">=", "value": 0.5}, "critical": {"op": ">=", "value": 0.9},
            "min_duration_s": 0, **condition}
    state = "paused" if paused else "muted" if muted else (evaluation_state or "active")
    alert = {"id": alert_id, "project_id": project, "name": name, "description": "",
             "condition": cond, "channels": [], "state": state, "paused": paused,
             "muted": muted, "evaluation_state": evaluation_state, "stage": None,
             "state_changed_at": state_changed_at, "created_by": None,
             "created_at": "2026-01-01T00:00:00+00:00",
             "updated_at": "2026-01-01T00:00:00+00:00"}
    kv = await nc.jetstream().key_value(CONFIG_BUCKET)
    await kv.put(f"alert_rule.{key_token(project)}.{key_token(alert_id)}",
                 orjson.dumps({"version": version, "project_id": project, "object": alert}))


async def webhook(nc: Client, settings: ApiarySettings, hub: Receivers, channel_id: str,
                  org: str, scope: dict[str, str],
                  severities: tuple[str, ...] = ("warning", "critical", "resolution"),
                  ) -> Receiver:
    """A webhook channel written as the applier writes it, and its receiver."""
    receiver = Receiver(secret=SECRET.encode())
    key, value = channel_entry(
        {"id": channel_id, "org_id": org, "type": "webhook", "scope": scope,
         "severities": list(severities),
         "config": {"url": hub.add(f"{channel_id}-{uuid.uuid4().hex[:6]}", receiver),
                    "secret": SECRET}},
        envelope_from_settings(settings))
    kv = await nc.jetstream().key_value(CONFIG_BUCKET)
    await kv.put(key, value)
    return receiver


def error_events(start_s: float, errors: int, ok: int, *, spread_s: float = 20.0,
                 duration_ms: float = 100.0, name: str = "llm") -> list[Event]:
    """``errors`` failing and ``ok`` succeeding model events, starting from ``start_s``
    over ``spread_s`` seconds."""
    total = errors + ok
    out: list[Event] = []
    for i in range(total):
        t = (start_s + spread_s * i / max(total, 1)) * 1000.0
        eid = str(uuid.uuid4())
        out.append(new_event(event_id=eid, session_id=eid, event_type="model",
                             event_name=name, start_time=t, end_time=t + duration_ms,
                             duration=duration_ms, error="boom" if i < errors else None))
    return out


def received(receiver: Receiver, alert_id: str | None = None) -> list[str]:
    """The stage of each alert notification the receiver accepted (of ``alert_id``)."""
    out = []
    for r in receiver.accepted():
        body = orjson.loads(r.body)
        if body.get("kind") == "alert" and alert_id in (None, body["alert_id"]):
            out.append(str(body["stage"]))
    return out


async def activities(nc: Client, kind: str = "transition") -> list[AlertActivity]:
    """The activities of ``kind`` on the ``alert-activity`` stream, in order (read, not
    consumed; the notifier reports its deliveries there too)."""
    js = nc.jetstream()
    info = await js.stream_info(ALERT_ACTIVITY_STREAM)
    out = []
    for seq in range(int(info.state.first_seq or 1), int(info.state.last_seq or 0) + 1):
        with contextlib.suppress(NotFoundError):
            msg = await js.get_msg(ALERT_ACTIVITY_STREAM, seq)
            activity = parse_activity(msg.data or b"")
            if activity.kind == kind:
                out.append(activity)
    return out
