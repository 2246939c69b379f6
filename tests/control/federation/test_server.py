"""The federation stream's control-plane end, with a real gRPC client from the generated
stubs signing identity JWTs with a test key: Hello/Welcome, the push order, resuming,
the assignment replay, health, commands, revocation, replacement and forged identities."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from apiary.control import ControlPlane
from apiary.control.db import DataPlane, DataPlaneCommand, DataPlaneHealth
from apiary.control.federation.server import FederationServer
from apiary.federation_wire import pb2, pb2_grpc

from .._tenants import Tenant, auth, make_tenant, ok
from ..conftest import FakeClock
from ._keys import DataPlaneKey, Registered, create_and_register, installation_admin

WAIT_S = 5.0


async def eventually(check: Callable[[], Any], within_s: float = WAIT_S) -> Any:
    """Poll ``check`` until it returns something truthy, at most ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s} s")
        await asyncio.sleep(0.05)


class Stream:
    """One data plane's side of a stream: write messages, read answers with a timeout."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        stub = pb2_grpc().FederationStub(channel)
        self.call = stub.Connect(metadata=[("authorization", f"Bearer {token}")])

    async def send(self, **body: Any) -> None:
        await self.call.write(pb2().DataPlaneMessage(**body))

    async def hello(self, dp_id: str, applied: int = 0) -> Any:
        await self.send(hello=pb2().Hello(data_plane_id=dp_id, apiary_version="9.9.9",
                                          versions={"nats-server": "2"},
                                          applied_config_version=applied))
        return await self.recv()

    async def recv(self, within_s: float = WAIT_S) -> Any:
        message = await asyncio.wait_for(self.call.read(), within_s)
        assert message is not grpc.aio.EOF, "the stream ended"
        return message

    async def changes(self, count: int) -> list[Any]:
        out = []
        while len(out) < count:
            message = await self.recv()
            assert message.WhichOneof("body") == "change", message
            out.append(message.change)
        return out

    async def ended(self, within_s: float = WAIT_S) -> grpc.StatusCode:
        """Read until the control plane ends the call; its status code."""
        async def drain() -> None:
            while await self.call.read() is not grpc.aio.EOF:
                pass
        try:
            await asyncio.wait_for(drain(), within_s)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return await asyncio.wait_for(self.call.code(), within_s)


@pytest.fixture
async def served(cp: ControlPlane, clock: FakeClock) -> AsyncIterator[tuple[FederationServer,
                                                                             grpc.aio.Channel]]:
    server = FederationServer(cp.settings, cp.database, port=0, poll_interval_s=0.1,
                              clock=clock)
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield server, channel
    finally:
        await channel.close()
        await server.stop(0.5)


@pytest.fixture
def setup(client: TestClient) -> tuple[str, Registered, Tenant]:
    root = installation_admin(client)
    return root, create_and_register(client, root, "one"), make_tenant(client, "Acme")


def _metric(client: TestClient, t: Tenant, name: str) -> dict[str, Any]:
    return dict(ok(client.post(f"/v1/projects/{t.project_id}/evaluators", headers=auth(t.owner),
                               json={"name": name, "type": "python",
                                     "code": "def score(e): return 1"}), 201))


def _assign(client: TestClient, t: Tenant, dp_id: str) -> None:
    ok(client.put(f"/v1/projects/{t.project_id}/data-plane", json={"data_plane_id": dp_id},
                  headers=auth(t.owner)))


def _plane(cp: ControlPlane, dp_id: str) -> DataPlane:
    with cp.transaction() as db:
        plane = db.get(DataPlane, dp_id)
        assert plane is not None
        db.expunge(plane)
        return plane


async def test_hello_welcome_and_the_push_order_with_the_assignment_replay(
        client: TestClient, cp: ControlPlane, served: Any,
        setup: tuple[str, Registered, Tenant]) -> None:
    _server, channel = served
    _root, one, t = setup
    before = _metric(client, t, "before")  # written while A is unassigned
    _assign(client, t, one.id)
    stream = Stream(channel, one.identity())
    welcome = (await stream.hello(one.id)).welcome
    assert [p.project_id for p in welcome.projects] == [t.project_id]
    assert welcome.projects[0].org_id == t.org_id
    assert welcome.resume_from == 0
    assert welcome.health_interval_s == cp.settings.federation_health_interval_s
    replay = await stream.changes(2)
    assert [(c.kind, c.object_id) for c in replay] == [("metric", before["id"]),
                                                       ("project_assigned", t.project_id)]
    assert json.loads(replay[0].payload)["name"] == "before"
    assert welcome.latest_config_version == replay[1].version
    # A change made now arrives on the open stream, after what came before.
    live = _metric(client, t, "live")
    (change,) = await stream.changes(1)
    assert (change.kind, change.object_id) == ("metric", live["id"])
    assert change.version > replay[1].version
    plane = _plane(cp, one.id)
    assert plane.connected is True
    assert plane.apiary_version == "9.9.9"
    stream.call.cancel()


async def test_resume_from_the_applied_version_without_gaps_or_repeats(
        client: TestClient, cp: ControlPlane, served: Any,
        setup: tuple[str, Registered, Tenant]) -> None:
    _server, channel = served
    _root, one, t = setup
    _assign(client, t, one.id)
    first = Stream(channel, one.identity())
    await first.hello(one.id)
    got = await first.changes(1)  # the assignment
    for name in ("a", "b", "c"):
        _metric(client, t, name)
    got += await first.changes(3)
    applied = got[2].version  # the data plane applied up to "b"
    await first.send(ack=pb2().ConfigAck(version=applied))
    await eventually(lambda: _plane(cp, one.id).applied_config_version == applied)
    first.call.cancel()
    _metric(client, t, "d")  # while disconnected

    second = Stream(channel, one.identity())
    welcome = (await second.hello(one.id, applied=applied)).welcome
    assert welcome.resume_from == applied
    resumed = await second.changes(2)
    assert [json.loads(c.payload)["name"] for c in resumed] == ["c", "d"]
    assert [c.version for c in resumed] == sorted(c.version for c in resumed)
    assert resumed[0].version == got[3].version  # nothing skipped
    # Nothing repeats: the next message is the next change.
    _metric(client, t, "e")
    (nxt,) = await second.changes(1)
    assert json.loads(nxt.payload)["name"] == "e"
    second.call.cancel()


async def test_an_applied_version_ahead_of_the_log_resyncs_from_zero(
        client: TestClient, served: Any, setup: tuple[str, Registered, Tenant]) -> None:
    _server, channel = served
    _root, one, t = setup
    _assign(client, t, one.id)
    stream = Stream(channel, one.identity())
    welcome = (await stream.hello(one.id, applied=10**9)).welcome
    assert welcome.resume_from == 0
    assert [c.kind for c in await stream.changes(1)] == ["project_assigned"]
    stream.call.cancel()


async def test_health_is_stored_and_its_history_pruned(
        client: TestClient, cp: ControlPlane, clock: FakeClock, served: Any,
        setup: tuple[str, Registered, Tenant]) -> None:
    _server, channel = served
    root, one, _t = setup
    stream = Stream(channel, one.identity())
    await stream.hello(one.id)

    def rows() -> int:
        with cp.transaction() as db:
            return int(db.scalar(select(func.count()).select_from(DataPlaneHealth).where(
                DataPlaneHealth.data_plane_id == one.id)) or 0)

    await stream.send(health=pb2().Health(at_unix_ms=1, ingest_rate=12.5, writer_lag=3,
                                          status="ok"))
    await eventually(lambda: rows() == 1)
    clock.advance(30 * 60)
    await stream.send(health=pb2().Health(at_unix_ms=2, ingest_rate=7.0, writer_lag=0,
                                          status="draining", reasons=["drain"]))
    await eventually(lambda: rows() == 2)
    listed = {p["id"]: p for p in ok(client.get("/v1/data-planes", headers=auth(root)))}
    assert listed[one.id]["last_health"]["ingest_rate"] == 7.0
    assert listed[one.id]["draining"] is True
    assert listed[one.id]["connected"] is True
    detail = ok(client.get(f"/v1/data-planes/{one.id}", headers=auth(root)))
    assert [h["ingest_rate"] for h in detail["health_history"]] == [12.5, 7.0]
    clock.advance(45 * 60)  # the first report is now older than an hour
    await stream.send(health=pb2().Health(at_unix_ms=3, ingest_rate=1.0, status="ok"))
    await eventually(lambda: rows() == 2 and _plane(cp, one.id).last_health is not None
                     and _plane(cp, one.id).last_health["ingest_rate"] == 1.0)  # type: ignore[index]
    detail = ok(client.get(f"/v1/data-planes/{one.id}", headers=auth(root)))
    assert [h["ingest_rate"] for h in detail["health_history"]] == [7.0, 1.0]
    stream.call.cancel()


async def test_rotate_key_stores_the_new_key_and_keeps_the_old_until_it_connects(
        client: TestClient, cp: ControlPlane, served: Any,
        setup: tuple[str, Registered, Tenant]) -> None:
    _server, channel = served
    root, one, _t = setup
    stream = Stream(channel, one.identity())
    await stream.hello(one.id)
    queued = ok(client.post(f"/v1/data-planes/{one.id}/rotate-key", headers=auth(root)), 202)
    command = (await stream.recv()).command
    assert command.WhichOneof("body") == "rotate_key"
    assert command.command_id == queued["id"]
    new_key = DataPlaneKey()
    await stream.send(command_result=pb2().CommandResult(
        command_id=command.command_id, ok=True, public_jwk=json.dumps(new_key.jwk).encode()))
    await eventually(lambda: _plane(cp, one.id).key_thumbprint == new_key.kid)
    with cp.transaction() as db:
        row = db.get(DataPlaneCommand, queued["id"])
        assert row is not None
        assert row.ok is True
        assert row.completed_at is not None
    assert _plane(cp, one.id).previous_key_thumbprint == one.key.kid
    stream.call.cancel()
    # The old key still works until a stream signed with the new one connects...
    old = Stream(channel, one.identity())
    assert (await old.hello(one.id)).WhichOneof("body") == "welcome"
    old.call.cancel()
    fresh = Stream(channel, new_key.identity(one.id))
    assert (await fresh.hello(one.id)).WhichOneof("body") == "welcome"
    assert _plane(cp, one.id).previous_key_thumbprint is None
    fresh.call.cancel()
    # ...and then no more.
    refused = Stream(channel, one.identity())
    await refused.send(hello=pb2().Hello(data_plane_id=one.id))
    assert await refused.ended() == grpc.StatusCode.UNAUTHENTICATED


async def test_revoke_closes_the_stream_and_the_next_connect_is_refused(
        client: TestClient, served: Any, setup: tuple[str, Registered, Tenant]) -> None:
    _server, channel = served
    root, one, _t = setup
    stream = Stream(channel, one.identity())
    await stream.hello(one.id)
    started = time.monotonic()
    ok(client.post(f"/v1/data-planes/{one.id}/revoke", headers=auth(root)))
    command = (await stream.recv()).command
    assert command.WhichOneof("body") == "revoke"
    assert await stream.ended(within_s=3.0) == grpc.StatusCode.UNAUTHENTICATED
    assert time.monotonic() - started < 2.5
    again = Stream(channel, one.identity())
    await again.send(hello=pb2().Hello(data_plane_id=one.id))
    assert await again.ended() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_second_stream_replaces_the_first(
        served: Any, setup: tuple[str, Registered, Tenant]) -> None:
    server, channel = served
    _root, one, _t = setup
    first = Stream(channel, one.identity())
    await first.hello(one.id)
    second = Stream(channel, one.identity())
    assert (await second.hello(one.id)).WhichOneof("body") == "welcome"
    assert await first.ended() == grpc.StatusCode.ABORTED
    assert server.connected() == [one.id]
    second.call.cancel()


@pytest.mark.parametrize("how", ["never-registered-key", "no-credential", "wrong-hello",
                                 "no-hello"])
async def test_forged_or_malformed_streams_are_refused(
        served: Any, setup: tuple[str, Registered, Tenant], how: str) -> None:
    _server, channel = served
    _root, one, _t = setup
    if how == "never-registered-key":  # same iss, a key the control plane never saw
        stream = Stream(channel, DataPlaneKey().identity(one.id))
        await stream.send(hello=pb2().Hello(data_plane_id=one.id))
        assert await stream.ended() == grpc.StatusCode.UNAUTHENTICATED
    elif how == "no-credential":
        stream = Stream(channel, "")
        assert await stream.ended() == grpc.StatusCode.UNAUTHENTICATED
    elif how == "wrong-hello":
        stream = Stream(channel, one.identity())
        await stream.send(hello=pb2().Hello(data_plane_id="dp-0000000000000000"))
        assert await stream.ended() == grpc.StatusCode.INVALID_ARGUMENT
    else:
        stream = Stream(channel, one.identity())
        await stream.send(ack=pb2().ConfigAck(version=1))
        assert await stream.ended() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_replayed_identity_jwt_is_refused_on_a_second_stream(
        served: Any, setup: tuple[str, Registered, Tenant]) -> None:
    """The JWT that opened a stream cannot open another (nor replace the first)."""
    server, channel = served
    _root, one, _t = setup
    identity = one.identity()
    first = Stream(channel, identity)
    assert (await first.hello(one.id)).WhichOneof("body") == "welcome"
    replay = Stream(channel, identity)
    await replay.send(hello=pb2().Hello(data_plane_id=one.id))
    assert await replay.ended() == grpc.StatusCode.UNAUTHENTICATED
    assert server.connected() == [one.id]
    first.call.cancel()


async def test_a_stream_that_never_sends_hello_is_ended(
        served: Any, setup: tuple[str, Registered, Tenant],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An authenticated stream that stays silent does not hold the control plane."""
    from apiary.control.federation import server as federation_server

    monkeypatch.setattr(federation_server, "HELLO_TIMEOUT_S", 0.5)
    server, channel = served
    _root, one, _t = setup
    silent = Stream(channel, one.identity())
    assert await silent.ended() == grpc.StatusCode.INVALID_ARGUMENT
    assert server.connected() == []


async def test_an_oversized_message_is_refused_before_it_is_read(
        served: Any, setup: tuple[str, Registered, Tenant]) -> None:
    """gRPC's 4 MiB receive limit: a huge Hello ends the call, it is never parsed."""
    server, channel = served
    _root, one, _t = setup
    stream = Stream(channel, one.identity())
    await stream.send(hello=pb2().Hello(data_plane_id=one.id,
                                        apiary_version="x" * (5 * 1024 * 1024)))
    assert await stream.ended() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert server.connected() == []
