"""The control plane's federation controller as a Ray actor: it serves streams, and after
Ray restarts its killed process (``ray.kill``, ``max_restarts=-1``) the supervisor's
``ensure_running`` serves again on the same port, with every data plane marked
disconnected until it dials again."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from _cp_controller import controller_settings, local_ray, wait_restarted
from cryptography.hazmat.primitives.asymmetric import ec

# Ray as `apiary up` runs it: the CLI chooses Ray's auth mode (RAY_AUTH_MODE) before Ray is
# imported (so `ray` is imported inside the tests, after this): this module's Ray then runs
# in the mode every other module of the session sees, whichever runs first.
import apiary.cli  # noqa: F401  (sets RAY_AUTH_MODE)
from apiary.control import ControlPlane
from apiary.control.db import DataPlane
from apiary.control.federation import create_data_plane, register_data_plane_key
from apiary.federation_wire import pb2, pb2_grpc
from apiary.startup.federation import (
    start_control_plane_controller,
    stop_control_plane_controller,
)

pytestmark = pytest.mark.ray
ISSUER = "http://cp.test/cp"


def _b64(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    with local_ray("apiary-cp-controller-test"):
        yield


async def _welcome(port: int, dp_id: str, key: ec.EllipticCurvePrivateKey, kid: str) -> Any:
    now = int(time.time())
    token = jwt.encode({"iss": dp_id, "sub": dp_id, "aud": ISSUER, "iat": now,
                        "exp": now + 60, "jti": str(uuid.uuid4())}, key, algorithm="ES256",
                       headers={"kid": kid})
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = pb2_grpc().FederationStub(channel).Connect(
            metadata=[("authorization", f"Bearer {token}")])
        await call.write(pb2().DataPlaneMessage(hello=pb2().Hello(data_plane_id=dp_id)))
        message = await asyncio.wait_for(call.read(), 10)
        call.cancel()
        return message


def _connected(cp: ControlPlane, dp_id: str) -> bool:
    with cp.transaction() as db:
        plane = db.get(DataPlane, dp_id)
        assert plane is not None
        return plane.connected


async def test_the_controller_serves_again_after_its_process_is_killed(
        ray_cluster: None, tmp_path: Path) -> None:
    import ray

    settings = controller_settings(tmp_path, ISSUER)
    cp = ControlPlane.open(settings)
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    with cp.transaction() as db:
        plane, token = create_data_plane(db, name="one", url="https://one.example",
                                         org_id=None, now=cp.now())
        dp_id = plane.id
        register_data_plane_key(db, bootstrap_token=token, public_jwk={
            "kty": "EC", "crv": "P-256", "x": _b64(numbers.x), "y": _b64(numbers.y)},
            apiary_version=None, now=cp.now())
    with cp.transaction() as db:
        row = db.get(DataPlane, dp_id)
        assert row is not None
        kid = row.key_thumbprint
        assert kid is not None
    handle = start_control_plane_controller(settings)
    try:
        port = ray.get(handle.port.remote(), timeout=30)
        assert port == settings.federation_grpc_port
        assert (await _welcome(port, dp_id, key, kid)).WhichOneof("body") == "welcome"
        # A stream that the dying process cannot close leaves "connected" behind...
        with cp.transaction() as db:
            row = db.get(DataPlane, dp_id)
            assert row is not None
            row.connected = True
        before = ray.get(handle.status.remote(), timeout=30)
        assert before["port"] == port
        ray.kill(handle, no_restart=False)
        served, after = await wait_restarted(handle, before)
        assert set(served) == {port}  # every answer of ensure_running: the same port
        assert after["connected"] == []
        # ...which the restarted controller clears; and it serves streams again.
        assert not _connected(cp, dp_id)
        assert (await _welcome(port, dp_id, key, kid)).WhichOneof("body") == "welcome"
    finally:
        stop_control_plane_controller(handle)
        cp.close()
