"""The control plane's federation server killed (``kill -9`` of its process) while a data
plane's controller streams with it: the data plane keeps accepting ingestion, dials again
with back-off, and once the server is back the config changes made meanwhile arrive in
order, with nothing skipped. Real processes and stores throughout: the control plane's cpdb
(SQLite) and HTTP app, its federation server in a child process, the data plane's JetStream
and event store."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _cp_metrics import deploy_python_metric
from _report import FaultReport
from _servers import free_port, http_server
from nats.js.errors import NotFoundError

from apiary.control import ControlPlane, admin
from apiary.control.api import create_control_plane_app
from apiary.control.db import DataPlane, EvaluatorConfig, Project
from apiary.credentials import mint_api_key
from apiary.dataplane.app import create_app
from apiary.dataplane.auth import ApiKeyAuthenticator, Permission, Principal, StoredKey
from apiary.dataplane.evaluation.definitions import DEFINITIONS_BUCKET, DefinitionStore
from apiary.dataplane.federation import ensure_identity
from apiary.dataplane.federation.controller import DataPlaneController
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.dataplane.replica.federation_state import CONFIG_BUCKET, STATE_BUCKET
from apiary.queue import NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

ISSUER = "http://cp.fault.test/cp"
CHILD = Path(__file__).with_name("_cp_federation_process.py")


class FederationProcess:
    """The federation server's child process on a fixed port; killable, restartable."""

    def __init__(self, data_dir: Path, port: int, envelope_key: str) -> None:
        self.env = {**os.environ, "APIARY_DATA_DIR": str(data_dir), "APIARY_CP_ISSUER": ISSUER,
                    "APIARY_CP_ENVELOPE_KEY": envelope_key, "APIARY_HOST": "127.0.0.1",
                    "APIARY_FEDERATION_GRPC_PORT": str(port),
                    "APIARY_FEDERATION_HEALTH_INTERVAL_S": "0.5"}
        self.proc: subprocess.Popen[str] | None = None

    def start(self, wait_s: float = 60.0) -> None:
        self.proc = subprocess.Popen([sys.executable, str(CHILD)], env=self.env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + wait_s
        line = ""
        while time.monotonic() < deadline and not line.startswith("listening"):
            line = self.proc.stdout.readline()
            assert line or self.proc.poll() is None, "the federation process exited"
        assert line.startswith("listening"), "the federation process never listened"

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[tuple[ControlPlane, ApiarySettings, str, str]]:
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    port = free_port()
    settings = ApiarySettings(data_dir=tmp_path / "cp", cp_issuer=ISSUER, cp_envelope_key=key,
                              host="127.0.0.1", federation_grpc_port=port,
                              federation_public_endpoint=f"127.0.0.1:{port}")
    cp = ControlPlane.open(settings)
    with http_server(create_control_plane_app(cp)) as url:
        yield cp, settings, url, key
    cp.close()


@pytest.fixture
async def nats_url(nats_server: NatsServer, tmp_path: Path) -> str:
    nc = await connect(nats_server.url, name="cp-killed-setup")
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    for bucket in (STATE_BUCKET, CONFIG_BUCKET, DEFINITIONS_BUCKET):
        with contextlib.suppress(Exception):
            await js.delete_key_value(bucket)
    await ensure_topology(js, ApiarySettings(data_dir=tmp_path / "topology"))
    await nc.close()
    return nats_server.url


async def _wait(condition: object, wait_s: float, what: str) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        value = condition()  # type: ignore[operator]
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, f"{what} not reached within {wait_s} s"
        await asyncio.sleep(0.05)


async def test_control_plane_killed_mid_stream(
    control_plane: tuple[ControlPlane, ApiarySettings, str, str], nats_url: str,
    store: EventStore, tmp_path: Path, fault_report: FaultReport,
) -> None:
    cp, cp_settings, cp_url, envelope_key = control_plane
    project_id = (await asyncio.to_thread(admin.projects_create, cp_settings, name="a",
                                          org="Acme"))["id"]
    created = await asyncio.to_thread(admin.data_planes_create, cp_settings, name="eu-1",
                                      url="https://dp-eu.example")
    dp_settings = ApiarySettings(data_dir=tmp_path / "dp", control_plane_url=cp_url,
                                 bootstrap_token=created["bootstrap_token"])
    identity = await asyncio.to_thread(ensure_identity, dp_settings)
    with cp.transaction() as db:
        project = db.get(Project, project_id)
        assert project is not None
        project.data_plane_id = identity.data_plane_id
        db.flush()
    first = deploy_python_metric(cp, project_id, "first")

    federation = FederationProcess(cp_settings.data_dir, cp_settings.federation_grpc_port,
                                   envelope_key)
    await asyncio.to_thread(federation.start)
    key = mint_api_key()
    principal = Principal(subject=f"key:{key.key_id}", org_id="o", workspace_id="w",
                          project_id=project_id, permissions=frozenset({Permission.EVENTS_WRITE}))
    context = await DataPlaneContext.open(
        dp_settings, nats_url, ApiKeyAuthenticator([StoredKey(key.key_id, key.secret_hash,
                                                               principal)]),
        store=DirectStoreClient(store))
    controller = DataPlaneController(dp_settings, nats_url, max_backoff_s=2.0)
    task = asyncio.create_task(controller.run())
    definitions = await DefinitionStore.open(context.js, dp_settings)

    async def online() -> list[str]:
        return sorted(s["name"] for s in await definitions.get(project_id))

    accepted = 0
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context)),
                                     base_url="http://dp") as http:
            await _wait(lambda: controller.connected, 30, "the stream")
            await _wait(lambda: _equals(online, ["first"]), 30, "the first metric")

            await asyncio.to_thread(federation.kill)  # kill -9, mid-stream
            killed_at = time.monotonic()
            await _wait(lambda: not controller.connected, 30, "the stream to break")

            # The data plane keeps accepting (durably: 200 only after JetStream's ack).
            for i in range(3):
                response = await http.post(
                    "/v1/traces", content=b'{"resourceSpans": []}',
                    headers={"authorization": f"Bearer {key.value}",
                             "content-type": "application/json"})
                assert response.status_code == 200, (i, response.text)
                accepted += 1
            # Changed at the control plane meanwhile, in this order.
            deploy_python_metric(cp, project_id, "second")
            deploy_python_metric(cp, project_id, "third")
            with cp.transaction() as db:
                metric = db.get(EvaluatorConfig, first)
                assert metric is not None
                db.delete(metric)
                db.flush()
            before = list(controller.received)

            await asyncio.to_thread(federation.start)
            await _wait(lambda: controller.connected, 60, "the stream again")
            recovery_s = time.monotonic() - killed_at
            await _wait(lambda: _equals(online, ["second", "third"]), 30,
                        "the changes made meanwhile")
            after = list(controller.received)[len(before):]
            assert after, "nothing arrived after the reconnect"
            assert after == sorted(set(after)), after  # in order, each once
            await _wait(lambda: _acked(cp, identity.data_plane_id) >= max(after), 30,
                        "the control plane to store the acks")
    finally:
        await controller.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await context.close()
        federation.stop()
    fault_report.record("control plane killed mid-stream", accepted=accepted, stored=accepted,
                        dead_lettered=0, duplicates=0, recovery_s=recovery_s)


async def _equals(read: object, expected: list[str]) -> bool:
    return await read() == expected  # type: ignore[operator,no-any-return]


def _acked(cp: ControlPlane, dp_id: str) -> int:
    with cp.transaction() as db:
        plane = db.get(DataPlane, dp_id)
        return 0 if plane is None else int(plane.applied_config_version or 0)
