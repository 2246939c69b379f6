"""The federation stream's control-plane end and alerts, with a raw gRPC client: an
AlertActivityReport is acknowledged once stored, and also when it can never be (not an
activity, another data plane's project: nothing stored); a preview command goes out as an
AlertPreview and its answer is stored; a command of a kind the stream does not know is
marked failed, never sent as another command (it used to go out as a Revoke)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from apiary.control import ControlPlane
from apiary.control.db import AlertDefinition, AlertEvent, DataPlane, DataPlaneCommand
from apiary.control.federation import ALERT_PREVIEW, queue_preview
from apiary.control.federation.server import FederationServer
from apiary.dataplane.alerts.events import AlertActivity, transition_event_id
from apiary.federation_wire import pb2

from .._tenants import Tenant, auth, make_tenant, ok
from ..conftest import FakeClock
from ._keys import Registered, create_and_register, installation_admin
from .test_server import Stream, eventually

ERROR_RATE = {"type": "aggregate", "field": "error_rate", "window_s": 60,
              "warning": {"op": ">=", "value": 0.5}}


@pytest.fixture
async def served(cp: ControlPlane, clock: FakeClock) -> AsyncIterator[grpc.aio.Channel]:
    server = FederationServer(cp.settings, cp.database, port=0, poll_interval_s=0.1,
                              clock=clock)
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(0.5)


async def _welcomed(client: TestClient, channel: grpc.aio.Channel,
                    ) -> tuple[Stream, Registered, Tenant, Tenant]:
    """A registered data plane serving tenant A's project (B's is not its), its stream
    welcomed and the assignment's replay read."""
    root = installation_admin(client)
    one = create_and_register(client, root, "one")
    a, b = make_tenant(client, "Acme"), make_tenant(client, "Other")
    ok(client.put(f"/v1/projects/{a.project_id}/data-plane",
                  json={"data_plane_id": one.id}, headers=auth(a.owner)))
    stream = Stream(channel, one.identity())
    assert (await stream.hello(one.id)).WhichOneof("body") == "welcome"
    return stream, one, a, b


async def _next(stream: Stream, body: str) -> Any:
    """The next message with ``body``, skipping config changes."""
    while True:
        message = await stream.recv()
        if message.WhichOneof("body") == body:
            return message
        assert message.WhichOneof("body") == "change", message


def _report(activity: AlertActivity | None, *, event_id: str | None = None,
            payload: bytes | None = None) -> Any:
    return pb2().AlertActivityReport(
        event_id=event_id or (activity.event_id if activity else ""),
        payload=payload if payload is not None else (
            activity.model_dump_json().encode() if activity else b""))


async def test_activity_is_acknowledged_once_stored_or_refused_for_good(
        client: TestClient, cp: ControlPlane, served: grpc.aio.Channel) -> None:
    stream, one, a, b = await _welcomed(client, served)
    alert_a = ok(client.post(f"/v1/projects/{a.project_id}/alerts", headers=auth(a.owner),
                             json={"name": "errors", "condition": ERROR_RATE}), 201)["id"]
    at = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)

    def transition(t: Tenant, alert_id: str, stage: str = "warning") -> AlertActivity:
        return AlertActivity(
            event_id=transition_event_id(alert_id, 1_800_000_000, stage), kind="transition",
            org_id=t.org_id, project_id=t.project_id, alert_id=alert_id, stage=stage,
            state="triggered", value=0.6, threshold=0.5, window_end=1_800_000_000, at=at)

    # B's project is not served by this data plane: refused (a warning), acknowledged.
    foreign = transition(b, "alert-" + uuid.uuid4().hex[:8])
    await stream.send(alert_activity=_report(foreign))
    assert (await _next(stream, "alert_activity_ack")).alert_activity_ack.event_id == \
        foreign.event_id
    # Not an activity: acknowledged, never stored.
    await stream.send(alert_activity=_report(None, event_id="garbage", payload=b"[1, 2"))
    assert (await _next(stream, "alert_activity_ack")).alert_activity_ack.event_id == \
        "garbage"
    # Its own project's: stored and applied, then acknowledged; a repeat is acknowledged.
    mine = transition(a, alert_a)
    for _ in range(2):
        await stream.send(alert_activity=_report(mine))
        assert (await _next(stream, "alert_activity_ack")).alert_activity_ack.event_id == \
            mine.event_id
    with cp.transaction() as db:
        assert list(db.scalars(select(AlertEvent.id))) == [mine.event_id]
        event = db.get(AlertEvent, mine.event_id)
        assert event is not None
        assert event.data_plane_id == one.id
        alert = db.get(AlertDefinition, alert_a)
        assert alert is not None
        assert (alert.evaluation_state, alert.stage, alert.state_changed_at) == (
            "triggered", "warning", at)
    # The stream goes on: the state change reaches the data plane as a config change.
    states = []
    while not states or states[-1] != "triggered":
        change = (await _next(stream, "change")).change
        assert (change.kind, change.object_id) == ("alert_rule", alert_a)
        states.append(json.loads(change.payload)["evaluation_state"])
    assert states[-1] == "triggered"


def _queue(cp: ControlPlane, dp_id: str, project_id: str, alert_id: str) -> str:
    with cp.transaction() as db:
        plane = db.get(DataPlane, dp_id)
        assert plane is not None
        return queue_preview(db, plane, project_id=project_id, alert_id=alert_id,
                             from_s=1_800_000_000, to_s=1_800_003_600, now=cp.now())


async def test_a_preview_goes_out_as_a_command_and_its_answer_is_stored(
        client: TestClient, cp: ControlPlane, served: grpc.aio.Channel,
        clock: FakeClock) -> None:
    root = installation_admin(client)
    one = create_and_register(client, root, "one")
    a = make_tenant(client, "Acme")
    ok(client.put(f"/v1/projects/{a.project_id}/data-plane",
                  json={"data_plane_id": one.id}, headers=auth(a.owner)))
    # Asked while the data plane was away, longer ago than anyone waits: never sent.
    stale = _queue(cp, one.id, a.project_id, "al-stale")
    clock.advance(11)
    command_id = _queue(cp, one.id, a.project_id, "al-1")
    stream = Stream(served, one.identity())
    assert (await stream.hello(one.id)).WhichOneof("body") == "welcome"
    command = (await _next(stream, "command")).command
    assert (command.command_id, command.WhichOneof("body")) == (command_id, "preview")
    assert (command.preview.project_id, command.preview.alert_id, command.preview.from_unix_s,
            command.preview.to_unix_s) == (a.project_id, "al-1", 1_800_000_000, 1_800_003_600)
    answer = {"alert_id": "al-1", "series": [{"t": 1_800_003_600, "value": 0.25}]}
    await stream.send(command_result=pb2().CommandResult(
        command_id=command_id, ok=True, payload=json.dumps(answer).encode()))

    def stored() -> DataPlaneCommand | None:
        with cp.transaction() as db:
            found = db.get(DataPlaneCommand, command_id)
            assert found is not None
            db.expunge(found)
            return found if found.completed_at is not None else None

    done = await eventually(stored)
    assert (done.ok, done.error, done.kind) == (True, None, ALERT_PREVIEW)
    assert done.body["result"] == answer
    with cp.transaction() as db:
        assert db.get(DataPlaneCommand, stale) is None
        plane = db.get(DataPlane, one.id)  # still trusted: nothing else changed
        assert plane is not None
        assert plane.status == "active"
    # An answer nobody read is deleted after a minute, with the stream's next poll.
    clock.advance(61)
    await eventually(lambda: _gone(cp, command_id))


def _gone(cp: ControlPlane, command_id: str) -> bool:
    with cp.transaction() as db:
        return db.get(DataPlaneCommand, command_id) is None


async def test_an_unknown_command_kind_is_never_sent_as_a_revoke(
        client: TestClient, cp: ControlPlane, served: grpc.aio.Channel) -> None:
    stream, one, _a, _b = await _welcomed(client, served)
    with cp.transaction() as db:
        db.add(DataPlaneCommand(id="cmd-from-the-future", data_plane_id=one.id,
                                kind="reticulate", body={}, created_at=cp.now()))
    failed = await eventually(lambda: _completed(cp, "cmd-from-the-future"))
    assert failed.ok is False
    assert "unknown command kind" in (failed.error or "")
    # The stream is open and was sent no command at all; the data plane is not revoked.
    await stream.send(health=pb2().Health(at_unix_ms=1, status="ok"))
    with cp.transaction() as db:
        plane = db.get(DataPlane, one.id)
        assert plane is not None
        assert plane.status == "active"
    await _no_command(stream)


def _completed(cp: ControlPlane, command_id: str) -> DataPlaneCommand | None:
    with cp.transaction() as db:
        found = db.get(DataPlaneCommand, command_id)
        if found is None or found.completed_at is None:
            return None
        db.expunge(found)
        return found


async def _no_command(stream: Stream) -> None:
    """Nothing but config changes arrives (within four polls: the command was marked
    failed in the poll that would have sent it, so anything sent is already on its way)."""
    while True:
        try:
            message = await stream.recv(within_s=0.4)
        except TimeoutError:
            return
        assert message.WhichOneof("body") == "change", message
