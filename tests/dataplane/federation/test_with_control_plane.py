"""The data plane's controller against the real control plane: its cpdb (SQLite), its HTTP
app (registration, served by uvicorn) and its federation server
(apiary.control.federation.FederationServer), with a real JetStream on the data plane's
side. Bootstrap with a token, hello, a metric created at the control plane applied here,
reconnect after the server restarts with nothing skipped, revocation stops the stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _cp_metrics import deploy_python_metric
from _fake_federation import until
from _served_control_plane import World, fresh_nats, served_control_plane

from apiary.control import ControlPlane, admin
from apiary.control.db import DataPlane, EvaluatorConfig, Project
from apiary.control.federation import revoke_data_plane
from apiary.control.federation.server import FederationServer
from apiary.dataplane.evaluation.definitions import DEFINITIONS_BUCKET, DefinitionStore
from apiary.dataplane.federation import ensure_identity
from apiary.dataplane.federation.controller import DataPlaneController
from apiary.dataplane.replica.federation_state import (
    CONFIG_BUCKET,
    STATE_BUCKET,
    federation_status,
)
from apiary.errors import ConfigurationError
from apiary.queue import NatsServer
from apiary.settings import ApiarySettings

ISSUER = "http://cp.federation.test/cp"


@pytest.fixture
async def world(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[World]:
    with served_control_plane(tmp_path / "cp", ISSUER) as (cp, settings, url, port):
        nc = await fresh_nats(nats_server.url, "federation-cp-test", tmp_path,
                              buckets=(STATE_BUCKET, CONFIG_BUCKET, DEFINITIONS_BUCKET))
        project = await asyncio.to_thread(admin.projects_create, settings, name="a",
                                          org="Acme")
        yield World(cp, settings, url, port, project["id"], nc, nats_server.url, tmp_path)
        await nc.close()


def _assign(cp: ControlPlane, project_id: str, dp_id: str) -> None:
    with cp.transaction() as db:
        project = db.get(Project, project_id)
        assert project is not None
        project.data_plane_id = dp_id


async def _online(w: World, dp_settings: ApiarySettings) -> list[str]:
    store = await DefinitionStore.open(w.nc.jetstream(), dp_settings)
    return sorted(s["name"] for s in await store.get(w.project_id))


async def test_bootstrap_hello_push_reconnect_and_revoke(world: World) -> None:
    w = world
    created = await asyncio.to_thread(admin.data_planes_create, w.cp_settings, name="eu-1",
                                      url="https://dp-eu.example")
    dp_settings = ApiarySettings(data_dir=w.tmp / "dp", control_plane_url=w.cp_url,
                                 bootstrap_token=created["bootstrap_token"])
    identity = await asyncio.to_thread(ensure_identity, dp_settings)
    assert identity.data_plane_id == created["id"]
    assert identity.federation_endpoint == f"127.0.0.1:{w.port}"
    # The token is single use: a second data plane with it is refused, clearly.
    with pytest.raises(ConfigurationError, match="used or expired"):
        await asyncio.to_thread(ensure_identity, dp_settings.model_copy(
            update={"data_dir": w.tmp / "dp-copy"}))

    _assign(w.cp, w.project_id, identity.data_plane_id)
    first_metric = deploy_python_metric(w.cp, w.project_id, "first")
    server = FederationServer(w.cp_settings, w.cp.database, port=w.port, poll_interval_s=0.1)
    await server.start()
    controller = DataPlaneController(dp_settings, w.nats_url, min_backoff_s=0.05,
                                     max_backoff_s=0.5)
    task = asyncio.create_task(controller.run())
    try:
        await until(lambda: controller.connected, what="the stream")
        await until(lambda: _online(w, dp_settings), timeout_s=10, what="the pushed metric")
        assert await _online(w, dp_settings) == ["first"]
        assert controller.applier is not None
        assert w.project_id in await controller.applier.served_projects()

        def plane() -> DataPlane:
            with w.cp.transaction() as db:
                found = db.get(DataPlane, identity.data_plane_id)
                assert found is not None
                db.expunge(found)
                return found

        await until(lambda: plane().applied_config_version == controller.applier.applied,
                    what="the control plane to store the ack")
        await until(lambda: plane().last_health is not None, what="a health report")

        # The control plane goes away; config changes meanwhile; it comes back.
        await server.stop()
        await until(lambda: not controller.connected, what="the stream to drop")
        deploy_python_metric(w.cp, w.project_id, "second")
        with w.cp.transaction() as db:
            metric = db.get(EvaluatorConfig, first_metric)
            assert metric is not None
            metric.enabled = False
            db.flush()
        server = FederationServer(w.cp_settings, w.cp.database, port=w.port,
                                  poll_interval_s=0.1)
        await server.start()
        await until(lambda: controller.connected, timeout_s=15, what="the stream again")
        await until(lambda: _names_are(w, dp_settings, ["second"]), timeout_s=10,
                    what="the changes made meanwhile")
        assert controller.sessions == 2

        # Revoked at the control plane: the stream closes and is never dialled again.
        with w.cp.transaction() as db:
            found = db.get(DataPlane, identity.data_plane_id)
            assert found is not None
            revoke_data_plane(db, found, reason="decommissioned", now=w.cp.now())
        try:
            await asyncio.wait_for(asyncio.shield(task), 15)
        except TimeoutError:
            raise AssertionError(f"the controller still runs after the revocation: "
                                 f"{controller.status()}, delays {controller.delays}") from None
        assert controller.revoked
        status = await federation_status(w.nc.jetstream())
        assert status is not None
        assert status["revoked"] is not None
    finally:
        await controller.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await server.stop()


async def _names_are(w: World, dp_settings: ApiarySettings, names: list[str]) -> bool:
    return await _online(w, dp_settings) == names

