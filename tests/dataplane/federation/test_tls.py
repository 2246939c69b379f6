"""The data plane's federation stream over TLS: registered with a control plane whose
federation endpoint serves TLS (a CA and certificate made in the test), it records that and
dials with TLS, verifying the certificate against federation_tls_ca_file, and a metric
created at the control plane is applied; a data plane trusting another CA, or expecting TLS
from a plaintext server, never connects and never sends anything in plaintext (the server
never sees a Hello), retrying with back-off and saying why."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import os
from pathlib import Path

import grpc
import pytest
from _cp_metrics import deploy_python_metric
from _fake_federation import FakeFederation, FederationServer, make_identity, until
from _servers import free_port, http_server
from _tls_certs import Pki, make_pki
from nats.js.errors import NotFoundError

from apiary.control import ControlPlane, admin
from apiary.control.api import create_control_plane_app
from apiary.control.db import Project
from apiary.control.federation.server import FederationServer as ControlFederationServer
from apiary.dataplane.evaluation.definitions import DEFINITIONS_BUCKET, DefinitionStore
from apiary.dataplane.federation import ensure_identity
from apiary.dataplane.federation.controller import DataPlaneController, channel_security
from apiary.dataplane.federation.identity import IDENTITY_FILE, load_identity
from apiary.dataplane.replica.federation_state import CONFIG_BUCKET, STATE_BUCKET
from apiary.errors import ConfigurationError
from apiary.federation_wire import pb2_grpc
from apiary.queue import NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings, load_settings

ISSUER = "http://cp.tls.test/cp"


class TlsFakeServer(FederationServer):
    """The fake control plane's servicer on a TLS port (``pki``'s certificate)."""

    def __init__(self, servicer: FakeFederation, pki: Pki) -> None:
        super().__init__(servicer)
        self.pki = pki

    async def start(self) -> str:
        server = grpc.aio.server()
        pb2_grpc().add_FederationServicer_to_server(self.servicer, server)
        credentials = grpc.ssl_server_credentials(
            [(self.pki.key_file.read_bytes(), self.pki.cert_file.read_bytes())])
        self.port = server.add_secure_port(f"127.0.0.1:{self.port}", credentials)
        await server.start()
        self._server = server
        return self.endpoint


@pytest.fixture
async def nats_url(nats_server: NatsServer, tmp_path: Path) -> str:
    nc = await connect(nats_server.url, name="federation-tls-test")
    js = nc.jetstream()
    for bucket in (STATE_BUCKET, CONFIG_BUCKET, DEFINITIONS_BUCKET):
        with contextlib.suppress(NotFoundError, Exception):
            await js.delete_key_value(bucket)
    await ensure_topology(js, ApiarySettings(data_dir=tmp_path / "topology"))
    await nc.close()
    return nats_server.url


async def test_registers_as_tls_then_streams_over_tls_and_a_pushed_metric_is_applied(
        nats_url: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", "cp")
    port = free_port()
    cp_settings = ApiarySettings(
        data_dir=tmp_path / "cp", cp_issuer=ISSUER, host="127.0.0.1",
        cp_envelope_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        federation_grpc_port=port, federation_public_endpoint=f"127.0.0.1:{port}",
        federation_health_interval_s=0.5, federation_tls_cert_file=pki.cert_file,
        federation_tls_key_file=pki.key_file)
    cp = ControlPlane.open(cp_settings)
    server = ControlFederationServer(cp_settings, cp.database, port=port, poll_interval_s=0.1)
    controller: DataPlaneController | None = None
    task: asyncio.Task[None] | None = None
    try:
        with http_server(create_control_plane_app(cp)) as url:
            project = await asyncio.to_thread(admin.projects_create, cp_settings, name="a",
                                              org="Acme")
            created = await asyncio.to_thread(admin.data_planes_create, cp_settings,
                                              name="eu-tls", url="https://dp-eu.example")
            dp_settings = ApiarySettings(data_dir=tmp_path / "dp", control_plane_url=url,
                                         bootstrap_token=created["bootstrap_token"],
                                         federation_tls_ca_file=pki.ca_file)
            identity = await asyncio.to_thread(ensure_identity, dp_settings)
        assert identity.federation_tls is True
        stored = json.loads((dp_settings.data_dir / IDENTITY_FILE).read_text())
        assert stored["federation_tls"] is True
        reloaded = load_identity(dp_settings.data_dir)
        assert reloaded is not None
        assert reloaded.federation_tls is True

        with cp.transaction() as db:
            found = db.get(Project, project["id"])
            assert found is not None
            found.data_plane_id = identity.data_plane_id
        await server.start()
        controller = DataPlaneController(dp_settings, nats_url, min_backoff_s=0.05,
                                         max_backoff_s=0.5)
        assert controller.status()["tls"] is True
        task = asyncio.create_task(controller.run())
        await until(lambda: controller is not None and controller.connected, timeout_s=15,
                    what="the TLS stream")
        deploy_python_metric(cp, project["id"], "over-tls")

        nc = await connect(nats_url, name="federation-tls-check")
        try:
            store = await DefinitionStore.open(nc.jetstream(), dp_settings)

            async def pushed() -> bool:
                return [s["name"] for s in await store.get(project["id"])] == ["over-tls"]

            await until(pushed, timeout_s=10, what="the metric pushed over TLS")
        finally:
            await nc.close()
        assert controller.sessions == 1
    finally:
        if controller is not None:
            await controller.stop()
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
        await server.stop(0.5)
        cp.close()


@pytest.fixture
def pkis(tmp_path: Path) -> tuple[Pki, Pki]:
    return make_pki(tmp_path / "pki-a", "a"), make_pki(tmp_path / "pki-b", "b")


async def _refused_without_a_hello(fed: FakeFederation, controller: DataPlaneController
                                   ) -> None:
    task = asyncio.create_task(controller.run())
    try:
        await until(lambda: len(controller.delays) >= 3, timeout_s=15,
                    what="three failed attempts")
        assert not controller.connected
        assert controller.sessions == 0
        assert fed.streams == []  # the servicer never read a Hello
        assert fed.refusals == []  # nor even an identity: no call reached it
    finally:
        await controller.stop()
        await asyncio.wait_for(task, 10)


async def test_a_data_plane_trusting_another_ca_cannot_connect(
        nats_url: str, tmp_path: Path, pkis: tuple[Pki, Pki]) -> None:
    served_by, trusted = pkis
    fed = FakeFederation()
    server = TlsFakeServer(fed, served_by)
    endpoint = await server.start()
    try:
        settings = ApiarySettings(data_dir=tmp_path / "dp", federation_tls_ca_file=trusted.ca_file,
                                  federation_endpoint=f"https://{endpoint}")
        identity = make_identity(settings.data_dir, endpoint)
        fed.register(identity)
        controller = DataPlaneController(settings, nats_url, identity=identity,
                                         min_backoff_s=0.05, max_backoff_s=0.2)
        assert controller.tls()
        await _refused_without_a_hello(fed, controller)
        assert "UNAVAILABLE" in controller.last_error
        assert any(word in controller.last_error.lower()
                   for word in ("ssl", "handshake", "certificate")), controller.last_error

        # The same data plane trusting the right CA connects.
        fixed = DataPlaneController(
            settings.model_copy(update={"federation_tls_ca_file": served_by.ca_file}),
            nats_url, identity=identity, min_backoff_s=0.05, max_backoff_s=0.2)
        task = asyncio.create_task(fixed.run())
        try:
            await until(lambda: fixed.connected, what="the stream with the right CA")
            assert len(fed.streams) == 1
        finally:
            await fixed.stop()
            await asyncio.wait_for(task, 10)
    finally:
        await server.stop()


async def test_tls_expected_never_falls_back_to_a_plaintext_server(
        nats_url: str, tmp_path: Path, pkis: tuple[Pki, Pki]) -> None:
    fed = FakeFederation()
    server = FederationServer(fed)  # plaintext
    endpoint = await server.start()
    try:
        settings = ApiarySettings(data_dir=tmp_path / "dp", federation_tls_ca_file=pkis[0].ca_file)
        # The control plane said at registration that its endpoint serves TLS.
        identity = dataclasses.replace(make_identity(settings.data_dir, endpoint),
                                       federation_tls=True)
        fed.register(identity)
        controller = DataPlaneController(settings, nats_url, identity=identity,
                                         min_backoff_s=0.05, max_backoff_s=0.2)
        await _refused_without_a_hello(fed, controller)
        assert "UNAVAILABLE" in controller.last_error
    finally:
        await server.stop()


def test_which_endpoints_are_dialled_with_tls(tmp_path: Path, pkis: tuple[Pki, Pki]) -> None:
    plain = ApiarySettings(data_dir=tmp_path)
    assert channel_security(plain, False, "cp:4320") == ("cp:4320", None)
    target, credentials = channel_security(plain, False, "https://cp:4320")
    assert target == "cp:4320"
    assert credentials is not None
    assert channel_security(plain, True, "cp:4320")[1] is not None
    forced = ApiarySettings(data_dir=tmp_path, federation_tls=True)
    assert channel_security(forced, False, "cp:4320")[1] is not None
    with pytest.raises(ConfigurationError, match="holds no PEM certificate"):
        load_settings(federation_tls_ca_file=pkis[0].key_file)
    with pytest.raises(ConfigurationError, match="federation_endpoint"):
        load_settings(federation_endpoint="http://cp:4320")
