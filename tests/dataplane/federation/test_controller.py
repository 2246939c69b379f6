"""The data plane's federation controller (apiary.dataplane.federation.controller) against a
real gRPC server playing the control plane (_fake_federation.py) and a real JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from _fake_federation import FakeFederation, FederationServer, make_identity, until
from _payloads import evaluator
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from apiary.credentials import mint_api_key
from apiary.dataplane.app import create_app
from apiary.dataplane.auth import ApiKeyAuthenticator, Permission, Principal, StoredKey
from apiary.dataplane.evaluation.definitions import DEFINITIONS_BUCKET, DefinitionStore
from apiary.dataplane.federation.controller import (
    MAX_BACKOFF_S,
    REFUSED_BACKOFF_S,
    DataPlaneController,
    backoff_delay,
)
from apiary.dataplane.federation.identity import DataPlaneIdentity
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.dataplane.replica.federation_state import (
    CONFIG_BUCKET,
    STATE_BUCKET,
    FederationFlags,
    federation_status,
)
from apiary.dataplane.replica.readiness import readiness
from apiary.queue import NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore


@dataclass
class Rig:
    fed: FakeFederation
    server: FederationServer
    identity: DataPlaneIdentity
    settings: ApiarySettings
    nc: Client
    nats_url: str

    def controller(self, **kwargs: float) -> DataPlaneController:
        return DataPlaneController(self.settings, self.nats_url, identity=self.identity,
                                   min_backoff_s=kwargs.get("min_backoff_s", 0.05),
                                   max_backoff_s=kwargs.get("max_backoff_s", 0.5),
                                   refused_backoff_s=kwargs.get("refused_backoff_s", 0.5))


@pytest.fixture
async def rig(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Rig]:
    nc = await connect(nats_server.url, name="controller-test")
    js = nc.jetstream()
    for bucket in (STATE_BUCKET, CONFIG_BUCKET, DEFINITIONS_BUCKET):
        with contextlib.suppress(NotFoundError, Exception):
            await js.delete_key_value(bucket)
    settings = ApiarySettings(data_dir=tmp_path / "dp")
    await ensure_topology(js, settings)
    fed = FakeFederation()
    server = FederationServer(fed)
    endpoint = await server.start()
    identity = make_identity(settings.data_dir, endpoint)
    fed.register(identity)
    yield Rig(fed, server, identity, settings, nc, nats_server.url)
    await server.stop()
    await nc.close()


@contextlib.asynccontextmanager
async def running(controller: DataPlaneController) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(controller.run())
    try:
        yield task
    finally:
        await controller.stop()
        await asyncio.wait_for(task, 10)


async def test_hello_welcome_and_a_pushed_metric_is_applied_then_acknowledged(rig: Rig) -> None:
    rig.fed.add("project_assigned", "p-2", "p-2", {"project_id": "p-2", "workspace_id": "w",
                                                  "org_id": "o", "name": "two"})
    version = rig.fed.add("metric", "p-1", "m-1", evaluator("m-1", "p-1"))
    controller = rig.controller()
    async with running(controller):
        await until(lambda: rig.fed.streams and version in rig.fed.streams[-1].acks,
                    what="the metric's ack")
        stream = rig.fed.streams[0]
        assert stream.hello.data_plane_id == rig.identity.data_plane_id
        assert stream.hello.applied_config_version == 0
        assert stream.hello.versions["apiary"]
        store = await DefinitionStore.open(rig.nc.jetstream(), rig.settings)
        assert [s["id"] for s in await store.get("p-1")] == ["m-1"]  # applied before the ack
        assert stream.acks == [1, 2]
        assert controller.applier is not None
        assert set(await controller.applier.served_projects()) == {"p-1", "p-2"}
        await until(lambda: len(stream.health) >= 2, what="two health reports")
        health = stream.health[-1]
        assert health.status == "ok"
        assert health.writer_lag >= 0
        assert health.versions["apiary"]
        assert health.at_unix_ms > 0
        assert controller.connected
        assert controller.status()["applied_config_version"] == 2


async def test_reconnects_after_the_server_restarts_and_skips_nothing(rig: Rig) -> None:
    rig.fed.add("metric", "p-1", "m-1", evaluator("m-1", "p-1"))
    controller = rig.controller()
    async with running(controller):
        await until(lambda: rig.fed.streams and rig.fed.streams[-1].acks == [1])
        await rig.server.stop()
        await until(lambda: not controller.connected, what="the stream to drop")
        # Changed while the control plane was away.
        rig.fed.add("metric", "p-1", "m-2", evaluator("m-2", "p-1"))
        rig.fed.add("metric", "p-1", "m-1", None, deleted=True)
        await rig.server.start()  # the same port
        await until(lambda: len(rig.fed.streams) == 2 and rig.fed.streams[1].acks[-1:] == [3],
                    timeout_s=15, what="the changes made meanwhile")
        second = rig.fed.streams[1]
        assert second.hello.applied_config_version == 1
        assert second.sent == [2, 3]  # in order, from the applied version on
        store = await DefinitionStore.open(rig.nc.jetstream(), rig.settings)
        assert [s["id"] for s in await store.get("p-1")] == ["m-2"]
        assert controller.delays
        assert all(0 <= d <= 0.5 for d in controller.delays)


async def test_revoke_closes_the_stream_and_never_reconnects(rig: Rig) -> None:
    controller = rig.controller()
    task = asyncio.create_task(controller.run())
    await until(lambda: controller.connected, what="the stream")
    rig.fed.command(revoke={"reason": "decommissioned"})
    await asyncio.wait_for(task, 10)  # run() returned: nothing left to reconnect
    assert controller.revoked
    assert not controller.connected
    assert rig.fed.streams[0].results[0].ok
    status = await federation_status(rig.nc.jetstream())
    assert status is not None
    assert status["revoked"]["reason"] == "decommissioned"
    # A restarted controller (the actor restarted by Ray) does not dial either.
    streams = len(rig.fed.streams)
    again = rig.controller()
    await asyncio.wait_for(again.run(), 10)
    assert again.revoked
    assert len(rig.fed.streams) == streams


async def test_readyz_says_revoked(rig: Rig, store: EventStore) -> None:
    controller = rig.controller()
    task = asyncio.create_task(controller.run())
    await until(lambda: controller.connected, what="the stream")
    ready = await readiness(rig.settings, rig.nc.jetstream(), DirectStoreClient(store))
    assert ready.checks["federation"].ok
    assert ready.checks["federation"].detail["applied_config_version"] == 0
    rig.fed.command(revoke={"reason": "decommissioned"})
    await asyncio.wait_for(task, 10)
    ready = await readiness(rig.settings, rig.nc.jetstream(), DirectStoreClient(store))
    assert "federation" in ready.not_ready
    assert ready.checks["federation"].error == (
        "revoked by the control plane: decommissioned")
    # A data plane that is not federated has no such check, whatever the bucket holds.
    legacy = ApiarySettings(data_dir=rig.settings.data_dir.parent / "legacy")
    assert "federation" not in (await readiness(legacy, rig.nc.jetstream(),
                                                DirectStoreClient(store))).checks


async def test_revoked_while_disconnected_the_refusal_stops_it_too(rig: Rig) -> None:
    controller = rig.controller()
    task = asyncio.create_task(controller.run())
    await until(lambda: controller.connected, what="the stream")
    await rig.server.stop()
    rig.fed.revoked.add(rig.identity.data_plane_id)  # revoked while the stream was down
    await rig.server.start()
    await asyncio.wait_for(task, 15)
    assert controller.revoked
    assert controller.last_error == "UNAUTHENTICATED: this data plane was revoked"
    status = await federation_status(rig.nc.jetstream())
    assert status is not None
    assert status["revoked"]["reason"] == "this data plane was revoked"


async def test_drain_makes_every_replica_refuse_ingestion_with_503_draining(
    rig: Rig, store: EventStore
) -> None:
    key = mint_api_key()
    principal = Principal(subject=f"key:{key.key_id}", org_id="o", workspace_id="w",
                          project_id="p-1", permissions=frozenset({Permission.EVENTS_WRITE}))
    context = await DataPlaneContext.open(
        rig.settings, rig.nats_url, ApiKeyAuthenticator([StoredKey(key.key_id, key.secret_hash,
                                                                   principal)]),
        store=DirectStoreClient(store))
    controller = rig.controller()
    headers = {"authorization": f"Bearer {key.value}", "content-type": "application/json"}
    try:
        async with running(controller), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(context)),
                base_url="http://dp") as http:
            await until(lambda: controller.connected)
            command_id = rig.fed.command(drain={"enabled": True})
            await until(lambda: rig.fed.streams[-1].results, what="the drain result")
            assert rig.fed.streams[-1].results[0].command_id == command_id
            await until(lambda: context.federation.draining, timeout_s=10,
                        what="the replica to see the drain")
            refused = await http.post("/v1/traces", content=b'{"resourceSpans": []}',
                                      headers=headers)
            assert refused.status_code == 503
            assert refused.json()["errorCode"] == "draining"
            assert int(refused.headers["retry-after"]) > 0
            await until(lambda: any(h.status == "draining" for h in rig.fed.streams[-1].health),
                        what="a draining health report")
            rig.fed.command(drain={"enabled": False})
            await until(lambda: not context.federation.draining, timeout_s=10)
            accepted = await http.post("/v1/traces", content=b'{"resourceSpans": []}',
                                       headers=headers)
            assert accepted.status_code == 200, accepted.text
    finally:
        await context.close()


async def test_rotate_key_signs_the_next_stream_with_the_new_key(rig: Rig) -> None:
    old = rig.identity.public_jwk()
    controller = rig.controller()
    async with running(controller):
        await until(lambda: controller.connected)
        rig.fed.command(rotate_key={})
        await until(lambda: rig.fed.streams[-1].results, what="the rotation result")
        result = rig.fed.streams[-1].results[0]
        assert result.ok
        new = json.loads(result.public_jwk)
        assert new != old
        assert "d" not in new
        rig.fed.keys[rig.identity.data_plane_id].append(new)  # the control plane stores it
        await rig.server.stop()
        await rig.server.start()
        await until(lambda: len(rig.fed.streams) == 2 and controller.connected,
                    what="a stream with the new key")
        assert rig.identity.public_jwk() == new
        assert not rig.identity.rotation_unconfirmed  # confirmed: the old key is gone


async def test_a_new_key_the_control_plane_did_not_store_falls_back_to_the_old_one(
    rig: Rig,
) -> None:
    old = rig.identity.public_jwk()
    controller = rig.controller(max_backoff_s=0.3, refused_backoff_s=0.3)
    async with running(controller):
        await until(lambda: controller.connected)
        rig.fed.command(rotate_key={})
        await until(lambda: rig.fed.streams[-1].results)
        await rig.server.stop()  # the control plane lost the result
        await rig.server.start()
        await until(lambda: len(rig.fed.streams) == 2 and controller.connected, timeout_s=15,
                    what="a stream with the old key again")
        assert rig.fed.refusals  # the new key was refused once
        assert rig.identity.public_jwk() == old


async def test_a_refused_identity_waits_the_refusal_back_off_not_the_reconnect_cap(
    rig: Rig,
) -> None:
    rig.fed.keys.clear()  # the control plane does not know this data plane
    controller = rig.controller(max_backoff_s=0.05, refused_backoff_s=0.2)
    async with running(controller):
        await until(lambda: len(controller.delays) >= 2, what="two refusals")
        assert controller.delays[:2] == [0.2, 0.2]
        assert controller.last_error.startswith("UNAUTHENTICATED")
        assert not rig.fed.streams


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    assert [backoff_delay(n, rng=lambda: 1.0) for n in range(8)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff_delay(5, rng=lambda: 0.0) == 0.0
    assert backoff_delay(100, rng=lambda: 0.999) < MAX_BACKOFF_S


async def test_an_unreachable_control_plane_is_redialled_within_the_reconnect_cap(
    rig: Rig,
) -> None:
    """Before: the back-off of an unreachable control plane grew to 30 s, so a data plane
    took ~19 s (p50) to reconnect after a 40 s outage. The cap is now
    ``federation_reconnect_max_s`` (5 s by default); a refused identity still waits 30 s."""
    controller = DataPlaneController(rig.settings, rig.nats_url, identity=rig.identity)
    assert rig.settings.federation_reconnect_max_s == 5.0
    assert controller.max_backoff_s == 5.0
    assert controller.refused_backoff_s == REFUSED_BACKOFF_S == 30.0
    assert [backoff_delay(n, cap=controller.max_backoff_s, rng=lambda: 1.0)
            for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


async def test_flags_stay_off_where_there_is_no_federation_bucket(rig: Rig) -> None:
    flags = FederationFlags()
    await flags.poll(rig.nc.jetstream())
    assert not flags.draining
    assert flags.revoked is None
    assert await federation_status(rig.nc.jetstream()) is None
