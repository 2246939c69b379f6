"""The data plane's federation controller as a Ray actor, started by the start-up sequence
(``DataPlaneServices.start_controller``): it registers with the bootstrap token, keeps the
stream to a real control plane (cpdb, HTTP app, federation server), and after Ray restarts
its killed process (``ray.kill``, ``max_restarts=-1``) the supervisor's ``ensure_running``
brings the stream back."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _servers import free_port, http_server

# Ray as `apiary up` runs it (the CLI chooses Ray's auth mode before Ray is imported).
import apiary.cli  # noqa: F401  (sets RAY_AUTH_MODE)
from apiary.control import ControlPlane, admin
from apiary.control.api import create_control_plane_app
from apiary.control.db import DataPlane
from apiary.control.federation.server import FederationServer
from apiary.queue import NatsServer
from apiary.settings import ApiarySettings
from apiary.startup.sequence import NODE_PLACEMENT, DataPlaneServices

pytestmark = pytest.mark.ray
ISSUER = "http://cp.dp-actor.test/cp"


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, namespace="apiary", log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def _connected(cp: ControlPlane, dp_id: str) -> bool:
    with cp.transaction() as db:
        plane = db.get(DataPlane, dp_id)
        return plane is not None and bool(plane.connected)


async def _wait(condition: Any, wait_s: float, what: str) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        if await asyncio.to_thread(condition):
            return
        assert time.monotonic() < deadline, f"{what} not reached within {wait_s} s"
        await asyncio.sleep(0.2)


async def test_the_controller_actor_streams_and_returns_after_its_process_is_killed(
    ray_cluster: None, nats_server: NatsServer, tmp_path: Path
) -> None:
    import ray

    from apiary.actors.dp_controller import DP_CONTROLLER_NAME

    port = free_port()
    cp_settings = ApiarySettings(
        data_dir=tmp_path / "cp", cp_issuer=ISSUER, host="127.0.0.1",
        cp_envelope_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        federation_grpc_port=port, federation_public_endpoint=f"127.0.0.1:{port}")
    cp = ControlPlane.open(cp_settings)
    server = FederationServer(cp_settings, cp.database, port=port, poll_interval_s=0.1)
    await server.start()
    try:
        with http_server(create_control_plane_app(cp)) as url:
            created = await asyncio.to_thread(admin.data_planes_create, cp_settings,
                                              name="eu-1", url="https://dp-eu.example")
            dp_settings = ApiarySettings(data_dir=tmp_path / "dp", control_plane_url=url,
                                         bootstrap_token=created["bootstrap_token"])
            services = DataPlaneServices(dp_settings, nats_server.url, NODE_PLACEMENT,
                                         client_name="dp-controller-test")
            assert await asyncio.to_thread(services.start_controller)
            dp_id = created["id"]
            await _wait(lambda: _connected(cp, dp_id), 60, "the stream")
            status = await asyncio.to_thread(services.controller_status)
            assert status is not None
            assert status["connected"]
            assert status["running"]

            actor = ray.get_actor(DP_CONTROLLER_NAME, namespace="apiary")
            ray.kill(actor, no_restart=False)  # Ray restarts the process
            await _wait(lambda: not _connected(cp, dp_id), 60, "the stream to end")

            def back() -> bool:
                services.ensure_running()  # as `apiary up`'s supervisor does
                try:
                    found = services.controller_status()
                except ray.exceptions.RayError:  # still restarting
                    return False
                return bool(found and found["connected"]) and _connected(cp, dp_id)

            await _wait(back, 90, "the stream after the restart")
            assert await asyncio.to_thread(services.stop) == []
    finally:
        await server.stop()
        cp.close()
