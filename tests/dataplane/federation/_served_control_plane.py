"""The real control plane for the data plane's federation tests: its cpdb on SQLite, its HTTP
app served by uvicorn, its federation server's port chosen free (started by the test); and
the data plane's JetStream, fresh for each test."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _servers import free_port, http_server
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from apiary.control import ControlPlane
from apiary.control.api import create_control_plane_app
from apiary.queue import connect, ensure_topology
from apiary.settings import ApiarySettings


@dataclass
class World:
    """A test's control plane (served), its project, and the data plane's JetStream."""

    cp: ControlPlane
    cp_settings: ApiarySettings
    cp_url: str
    port: int
    project_id: str
    nc: Client
    nats_url: str
    tmp: Path


@contextlib.contextmanager
def served_control_plane(data_dir: Path, issuer: str,
                         ) -> Iterator[tuple[ControlPlane, ApiarySettings, str, int]]:
    """The control plane in ``data_dir``, its settings, the URL its HTTP app is served at and
    the port its federation server is to listen on; closed on exit."""
    port = free_port()
    settings = ApiarySettings(
        data_dir=data_dir, cp_issuer=issuer, host="127.0.0.1",
        cp_envelope_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        federation_grpc_port=port, federation_public_endpoint=f"127.0.0.1:{port}",
        federation_health_interval_s=0.5)
    cp = ControlPlane.open(settings)
    with http_server(create_control_plane_app(cp)) as url:
        yield cp, settings, url, port
    cp.close()


async def fresh_nats(url: str, name: str, tmp_path: Path, buckets: tuple[str, ...],
                     streams: tuple[str, ...] = ()) -> Client:
    """A connection to the data plane's nats-server with ``buckets`` and ``streams`` deleted
    (nothing left by another test) and the topology ensured again."""
    nc = await connect(url, name=name)
    js = nc.jetstream()
    for bucket in buckets:
        with contextlib.suppress(NotFoundError, Exception):
            await js.delete_key_value(bucket)
    for stream in streams:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, ApiarySettings(data_dir=tmp_path / "topology"))
    return nc
