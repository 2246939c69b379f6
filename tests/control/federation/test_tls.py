"""TLS on the federation endpoint (federation_tls_cert_file / federation_tls_key_file): the
server serves TLS with a certificate of a CA made in the test, registration tells data
planes so, a client trusting the CA gets its Welcome, a plaintext client gets nothing (and
the server never sees its Hello), and bad settings are refused with what to fix."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from _tls_certs import Pki, make_pki
from fastapi.testclient import TestClient

from apiary.control import ControlPlane
from apiary.control.db import DataPlane
from apiary.control.federation.server import FederationServer
from apiary.errors import ConfigurationError
from apiary.settings import load_settings

from ..conftest import FakeClock
from ._keys import DataPlaneKey, create, create_and_register, installation_admin, register
from .test_server import Stream


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki", "cp")


@pytest.fixture
def settings_overrides(pki: Pki) -> dict[str, object]:
    return {"federation_tls_cert_file": pki.cert_file, "federation_tls_key_file": pki.key_file}


@pytest.fixture
async def tls_server(cp: ControlPlane, clock: FakeClock) -> AsyncIterator[int]:
    server = FederationServer(cp.settings, cp.database, port=0, poll_interval_s=0.1,
                              clock=clock)
    port = await server.start()
    try:
        yield port
    finally:
        await server.stop(0.5)


def test_registration_tells_the_data_plane_the_endpoint_serves_tls(
        client: TestClient) -> None:
    root = installation_admin(client)
    created = create(client, root, "tls-1")
    answer = register(client, created["bootstrap_token"], DataPlaneKey())
    assert answer.status_code == 200, answer.text
    assert answer.json()["federation_tls"] is True


async def test_a_client_trusting_the_ca_is_welcomed_over_tls(
        client: TestClient, cp: ControlPlane, pki: Pki, tls_server: int) -> None:
    one = create_and_register(client, installation_admin(client), "tls-ok")
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca_file.read_bytes())
    async with grpc.aio.secure_channel(f"localhost:{tls_server}", credentials) as channel:
        stream = Stream(channel, one.identity())
        message = await stream.hello(one.id)
        assert message.WhichOneof("body") == "welcome"
        with cp.transaction() as db:
            plane = db.get(DataPlane, one.id)
            assert plane is not None
            assert plane.connected is True
        stream.call.cancel()


async def test_a_plaintext_client_against_the_tls_port_fails_before_any_hello(
        client: TestClient, cp: ControlPlane, tls_server: int) -> None:
    one = create_and_register(client, installation_admin(client), "tls-plain")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tls_server}") as channel:
        stream = Stream(channel, one.identity())
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stream.hello(one.id)
        assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
    with cp.transaction() as db:
        plane = db.get(DataPlane, one.id)
        assert plane is not None
        assert plane.connected is False  # the server never got to the Hello
        assert plane.last_seen_at is None


def test_a_certificate_without_its_key_is_refused_with_the_fix(pki: Pki) -> None:
    with pytest.raises(ConfigurationError, match="APIARY_FEDERATION_TLS_KEY_FILE is not"):
        load_settings(federation_tls_cert_file=pki.cert_file)
    with pytest.raises(ConfigurationError, match="APIARY_FEDERATION_TLS_CERT_FILE is not"):
        load_settings(federation_tls_key_file=pki.key_file)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_readable_by_others_is_refused_with_the_chmod(pki: Pki, mode: int) -> None:
    os.chmod(pki.key_file, mode)
    with pytest.raises(ConfigurationError) as refused:
        load_settings(federation_tls_cert_file=pki.cert_file,
                      federation_tls_key_file=pki.key_file)
    assert f"run `chmod 600 {pki.key_file}`" in refused.value.message
    assert "federation_tls_key_file (env APIARY_FEDERATION_TLS_KEY_FILE)" in refused.value.message


def test_files_that_are_not_pem_or_missing_are_refused(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="holds no PEM certificate"):
        load_settings(federation_tls_cert_file=pki.key_file,
                      federation_tls_key_file=pki.key_file)
    os.chmod(pki.ca_file, 0o600)
    with pytest.raises(ConfigurationError, match="holds no PEM private key"):
        load_settings(federation_tls_cert_file=pki.cert_file,
                      federation_tls_key_file=pki.ca_file)
    with pytest.raises(ConfigurationError, match="cannot read the federation TLS certificate"):
        load_settings(federation_tls_cert_file=tmp_path / "absent.pem",
                      federation_tls_key_file=pki.key_file)


def test_a_key_of_mode_0400_and_its_certificate_are_accepted(pki: Pki) -> None:
    os.chmod(pki.key_file, 0o400)
    settings = load_settings(federation_tls_cert_file=pki.cert_file,
                             federation_tls_key_file=pki.key_file)
    assert settings.federation_serves_tls
    assert not load_settings().federation_serves_tls
