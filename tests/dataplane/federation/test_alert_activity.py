"""Alert activity and previews over the real federation stream: the data plane's controller
(:class:`DataPlaneController`, real JetStream) against the real control plane (its cpdb on
SQLite, its HTTP app served by uvicorn, its :class:`FederationServer`), with the session's
chDB behind the data plane.

- every activity waiting in ``alert-activity`` reaches ``alert_events`` once, also when the
  stream is killed mid-way; a JetStream message is acknowledged only after the control
  plane stored it (or refused it for good: a bad payload, another project's event);
- the alert's state at the control plane follows the reported transitions;
- ``GET .../alerts/{id}/preview`` is computed by the data plane over its events and
  answered through the stream; a rule the data plane does not hold is "not found" there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import _served_control_plane
import httpx
import pytest
from _fake_federation import until
from _served_control_plane import fresh_nats, served_control_plane
from sqlalchemy import func, select

from apiary.control import admin
from apiary.control.config import alerts
from apiary.control.db import (
    AlertDefinition,
    AlertEvent,
    DataPlane,
    DataPlaneCommand,
    Project,
)
from apiary.control.federation import queue_preview
from apiary.control.federation.server import FederationServer
from apiary.dataplane.alerts.events import (
    AlertActivity,
    delivery_event_id,
    publish_activity,
    transition_event_id,
)
from apiary.dataplane.federation import ensure_identity
from apiary.dataplane.federation.apply import key_token
from apiary.dataplane.federation.controller import DataPlaneController
from apiary.dataplane.replica.federation_state import CONFIG_BUCKET, STATE_BUCKET
from apiary.errors import DataPlaneUnavailable
from apiary.event import new_event
from apiary.queue import (
    ALERT_ACTIVITY_CONSUMER,
    ALERT_ACTIVITY_STREAM,
    NatsServer,
)
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

ISSUER = "http://cp.activity.test/cp"
OWNER = "owner@activity.example"
PASSWORD = "correct horse battery staple"
ERROR_RATE = {"type": "aggregate", "field": "error_rate", "window_s": 60,
              "warning": {"op": ">=", "value": 0.5}, "critical": {"op": ">=", "value": 0.9}}


@dataclass
class World(_served_control_plane.World):
    org_id: str


@pytest.fixture
async def world(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[World]:
    with served_control_plane(tmp_path / "cp", ISSUER) as (cp, settings, url, port):
        nc = await fresh_nats(nats_server.url, "alert-activity-test", tmp_path,
                              buckets=(STATE_BUCKET, CONFIG_BUCKET),
                              streams=(ALERT_ACTIVITY_STREAM,))
        await asyncio.to_thread(admin.users_create, settings, email=OWNER, password=PASSWORD)
        project = await asyncio.to_thread(admin.projects_create, settings, name="a",
                                          org=f"Acme {uuid.uuid4().hex[:6]}", owner_email=OWNER)
        yield World(cp, settings, url, port, project["id"], nc, nats_server.url, tmp_path,
                    project["org_id"])
        await nc.close()


async def _data_plane(w: World, store: EventStore | None = None) -> DataPlaneController:
    """A registered data plane serving the project, and its controller (not started)."""
    created = await asyncio.to_thread(admin.data_planes_create, w.cp_settings, name="eu-1",
                                      url="https://dp-eu.example")
    dp_settings = ApiarySettings(data_dir=w.tmp / "dp", control_plane_url=w.cp_url,
                                 bootstrap_token=created["bootstrap_token"])
    identity = await asyncio.to_thread(ensure_identity, dp_settings)
    with w.cp.transaction() as db:
        project = db.get(Project, w.project_id)
        assert project is not None
        project.data_plane_id = identity.data_plane_id
    return DataPlaneController(
        dp_settings, w.nats_url, store=None if store is None else DirectStoreClient(store),
        min_backoff_s=0.05, max_backoff_s=0.3)


def _create_alert(w: World, name: str = "errors") -> str:
    with w.cp.transaction() as db:
        project = db.get(Project, w.project_id)
        assert project is not None
        alert = alerts.create_alert(w.cp, db, project, name=name, description="",
                                    condition=ERROR_RATE, channels=[], author="user:test")
        return str(alert.id)


def _transition(w: World, alert_id: str, stage: str, at: datetime) -> AlertActivity:
    end = int(at.timestamp())
    return AlertActivity(
        event_id=transition_event_id(alert_id, end, stage), kind="transition",
        org_id=w.org_id, project_id=w.project_id, alert_id=alert_id, stage=stage,
        state="resolved" if stage == "resolution" else "triggered", value=0.95,
        threshold=0.9, window_end=end, at=at)


def _delivery(w: World, alert_id: str, i: int, at: datetime) -> AlertActivity:
    delivery = f"{i:032x}"
    return AlertActivity(
        event_id=delivery_event_id(delivery, "delivered"), kind="delivery", org_id=w.org_id,
        project_id=w.project_id, alert_id=alert_id, stage="warning", state="triggered",
        channel_id="chan-1", channel_type="webhook", outcome="delivered", attempts=1,
        detail="accepted by the receiver after 1 attempt(s)", at=at)


def _stored(w: World) -> list[str]:
    with w.cp.transaction() as db:
        return list(db.scalars(select(AlertEvent.id)))


async def _backlog(w: World) -> tuple[int, int]:
    """The ``federation-activity`` consumer's (pending, ack-pending)."""
    info = await w.nc.jetstream().consumer_info(ALERT_ACTIVITY_STREAM, ALERT_ACTIVITY_CONSUMER)
    return int(info.num_pending or 0), int(info.num_ack_pending or 0)


async def test_activity_is_stored_once_across_a_stream_killed_mid_way(world: World) -> None:
    w = world
    controller = await _data_plane(w)
    alert_id = _create_alert(w)
    js = w.nc.jetstream()
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    # Waiting in JetStream before any stream: deliveries, and the warning.
    first = [_delivery(w, alert_id, i, t0 + timedelta(seconds=i)) for i in range(200)]
    first.append(_transition(w, alert_id, "warning", t0))
    for activity in first:
        await publish_activity(js, activity)
    # Not activities the control plane may store: garbage, and another org's project.
    await js.publish(f"{ALERT_ACTIVITY_STREAM}.x.y", b"not an activity",
                     headers={"Nats-Msg-Id": "garbage-1"})
    other = await asyncio.to_thread(admin.projects_create, w.cp_settings, name="other",
                                    org=f"Other {uuid.uuid4().hex[:6]}")
    foreign = _transition(w, alert_id, "critical", t0).model_copy(update={
        "event_id": "transition.foreign.1.critical", "org_id": other["org_id"],
        "project_id": other["id"]})
    await publish_activity(js, foreign)
    assert await _backlog(w) == (len(first) + 2, 0)

    server = FederationServer(w.cp_settings, w.cp.database, port=w.port, poll_interval_s=0.1)
    await server.start()
    task = asyncio.create_task(controller.run())
    try:
        await until(lambda: len(_stored(w)) >= 20, timeout_s=30, what="the first reports")
        await server.stop(grace_s=0)  # the stream is killed while reports are in flight
        await until(lambda: not controller.connected, what="the stream to drop")
        stored_then = len(_stored(w))
        pending, ack_pending = await _backlog(w)
        # Nothing was acknowledged that the control plane did not store.
        assert (len(first) + 2) - (pending + ack_pending) <= stored_then + 2

        # Meanwhile the alert goes critical and resolves.
        critical = _transition(w, alert_id, "critical", t0 + timedelta(minutes=1))
        resolution = _transition(w, alert_id, "resolution", t0 + timedelta(minutes=5))
        for activity in (critical, resolution):
            await publish_activity(js, activity)

        server = FederationServer(w.cp_settings, w.cp.database, port=w.port,
                                  poll_interval_s=0.1)
        await server.start()
        expected = sorted(a.event_id for a in [*first, critical, resolution])
        await until(lambda: sorted(_stored(w)) == expected, timeout_s=60,
                    what="every report stored")
        deadline = time.monotonic() + 30
        while await _backlog(w) != (0, 0):
            assert time.monotonic() < deadline, f"left in the stream: {await _backlog(w)}"
            await asyncio.sleep(0.05)
        assert controller.sessions == 2
        assert controller.activity_acked >= len(expected)
        with w.cp.transaction() as db:
            assert db.scalar(select(func.count()).select_from(AlertEvent)) == len(expected)
            alert = db.get(AlertDefinition, alert_id)
            assert alert is not None
            assert (alert.evaluation_state, alert.stage, alert.state_changed_at) == (
                "resolved", None, resolution.at)
            delivered = db.get(AlertEvent, first[7].event_id)
            assert delivered is not None
            assert (delivered.kind, delivered.channel_id, delivered.outcome,
                    delivered.attempts, delivered.data_plane_id) == (
                "delivery", "chan-1", "delivered", 1, controller.identity.data_plane_id)
    finally:
        await controller.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await server.stop()


def _insert_errors(store: EventStore, w: World, start_s: int) -> None:
    """10 model events from ``start_s`` on, one a second, half of them errors."""
    events = []
    for i in range(10):
        t = (start_s + i) * 1000.0
        eid = str(uuid.uuid4())
        events.append(new_event(event_id=eid, session_id=eid, event_type="model",
                                event_name="llm", start_time=t, end_time=t + 50.0,
                                duration=50.0, error="boom" if i % 2 else None))
    store.insert_events({"org_id": w.org_id, "workspace_id": "w", "project_id": w.project_id},
                        1, events)


async def _session(w: World) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=w.cp_url) as client:
        answer = await client.post("/v1/auth/login",
                                   json={"email": OWNER, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['session_token']}"}


async def test_preview_is_computed_by_the_data_plane_over_the_stream(
        world: World, store: EventStore) -> None:
    w = world
    controller = await _data_plane(w, store)
    now = int(time.time())
    # Ten events in the first seconds of a minute four minutes ago (points of the preview
    # may sit on the minute grid).
    base = now // 60 * 60 - 240
    _insert_errors(store, w, base + 1)
    headers = await _session(w)
    async with httpx.AsyncClient(base_url=w.cp_url, timeout=30) as client:
        created = await client.post(f"/v1/projects/{w.project_id}/alerts", headers=headers,
                                    json={"name": "errors", "condition": ERROR_RATE})
        assert created.status_code == 201, created.text
        alert_id = created.json()["id"]
        url = f"/v1/projects/{w.project_id}/alerts/{alert_id}/preview"

        # The data plane is not connected yet: 503, naming it.
        answer = await client.get(url, headers=headers)
        assert answer.status_code == 503, answer.text
        assert answer.json()["errorCode"] == "data_plane_unavailable"
        assert "eu-1" in answer.json()["message"]

        server = FederationServer(w.cp_settings, w.cp.database, port=w.port,
                                  poll_interval_s=0.1)
        await server.start()
        task = asyncio.create_task(controller.run())
        try:
            rule_key = f"alert_rule.{key_token(w.project_id)}.{key_token(alert_id)}"

            async def pushed() -> bool:
                with contextlib.suppress(Exception):
                    kv = await w.nc.jetstream().key_value(CONFIG_BUCKET)
                    return (await kv.get(rule_key)).value is not None
                return False

            await until(pushed, timeout_s=15, what="the rule pushed to the data plane")
            answer = await client.get(url, headers=headers,
                                      params={"from": now - 600, "to": now})
            assert answer.status_code == 200, answer.text
            preview = answer.json()
            assert (preview["alert_id"], preview["field"], preview["type"],
                    preview["window_s"], preview["from"], preview["to"]) == (
                alert_id, "error_rate", "aggregate", 60, now - 600, now)
            assert preview["warning"] == {"op": ">=", "value": 0.5}
            assert preview["critical"] == {"op": ">=", "value": 0.9}
            times = [p["t"] for p in preview["series"]]
            assert times == sorted(times)
            assert len(times) >= 10
            assert all(now - 660 <= t <= now for t in times)
            # Windows holding all ten events measure 0.5; empty windows have no value.
            values = {p["t"]: p["value"] for p in preview["series"]}
            assert {v for t, v in values.items() if base + 10 < t <= base + 60} == {0.5}
            assert all(v is None for t, v in values.items() if t <= base or t > base + 70)

            # A rule this data plane does not hold: "not found" there, 503 here.
            def ask_unknown() -> str:
                with w.cp.transaction() as db:
                    project = db.get(Project, w.project_id)
                    assert project is not None
                    assert project.data_plane_id is not None
                    plane = db.get(DataPlane, project.data_plane_id)
                    assert plane is not None
                    return queue_preview(db, plane, project_id=w.project_id,
                                         alert_id="not-pushed", from_s=now - 60, to_s=now,
                                         now=w.cp.now())

            command_id = await asyncio.to_thread(ask_unknown)
            with pytest.raises(DataPlaneUnavailable, match="does not hold this alert"):
                await alerts.await_preview(w.cp, command_id, "eu-1")
            with w.cp.transaction() as db:  # read, hence deleted
                assert db.get(DataPlaneCommand, command_id) is None
        finally:
            await controller.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
            await server.stop()
