"""A small control-plane federation servicer for the data plane's controller tests: a real
``grpc.aio`` server implementing ``apiary.federation.v1.Federation/Connect`` as the contract
says (identity JWT verified against the registered public keys by RFC 7638 kid, Hello then
Welcome, the config log pushed in version order from the DP's applied version, commands),
recording what the data plane sends. Also :func:`make_identity`: a registered identity
without a registration round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import jwt
import orjson
from cryptography.hazmat.primitives import serialization

from apiary._private.files import write_private
from apiary.dataplane.federation.identity import (
    IDENTITY_FILE,
    KEY_FILE,
    DataPlaneIdentity,
    generate_key,
    thumbprint,
)
from apiary.federation_wire import pb2, pb2_grpc

ISSUER = "https://cp.fed.test/cp"


def make_identity(data_dir: Path, endpoint: str, dp_id: str = "dp-00000000000000f1"
                  ) -> DataPlaneIdentity:
    """A data plane identity as registration leaves it (key and identity files, 0600)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    write_private(data_dir / KEY_FILE, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    write_private(data_dir / IDENTITY_FILE, json.dumps({
        "data_plane_id": dp_id, "control_plane_url": "http://127.0.0.1:9/cp", "issuer": ISSUER,
        "federation_endpoint": endpoint, "name": "test"}))
    return DataPlaneIdentity(data_plane_id=dp_id, control_plane_url="http://127.0.0.1:9/cp",
                             issuer=ISSUER, federation_endpoint=endpoint, name="test",
                             data_dir=data_dir)


@dataclass
class Stream:
    """One accepted stream, as the servicer saw it."""

    hello: Any
    acks: list[int] = field(default_factory=list)
    health: list[Any] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)  # versions of the changes sent
    commands: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    closed: bool = False


class FakeFederation:
    """The servicer; tests append to :attr:`log`, queue commands, and read the streams."""

    def __init__(self) -> None:
        self.keys: dict[str, list[dict[str, str]]] = {}  # dp id -> accepted public JWKs
        self.revoked: set[str] = set()
        self.log: list[Any] = []  # ConfigChange, versions strictly increasing
        self.projects: list[tuple[str, str, str, str]] = [("p-1", "ws-1", "org-1", "one")]
        self.health_interval_s = 0.2
        self.streams: list[Stream] = []
        self.refusals: list[str] = []
        self.changed = asyncio.Event()

    def register(self, identity: DataPlaneIdentity) -> None:
        self.keys.setdefault(identity.data_plane_id, []).append(identity.public_jwk())

    def add(self, kind: str, project_id: str, object_id: str, payload: dict[str, Any] | None,
            *, deleted: bool = False) -> int:
        version = (self.log[-1].version if self.log else 0) + 1
        self.log.append(pb2().ConfigChange(
            version=version, kind=kind, project_id=project_id, object_id=object_id,
            deleted=deleted, payload=orjson.dumps(payload) if payload is not None else b"",
            changed_at_unix_ms=0))
        self.changed.set()
        return version

    def command(self, **body: Any) -> str:
        """Queue a command on the newest stream; its id."""
        command_id = f"cmd-{sum(len(s.results) for s in self.streams)}-{len(self.streams)}"
        self.streams[-1].commands.put_nowait(pb2().Command(command_id=command_id, **body))
        self.changed.set()
        return command_id

    def _verify(self, context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
        metadata = dict(context.invocation_metadata() or ())
        token = str(metadata.get("authorization", "")).removeprefix("Bearer ")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
            dp_id = claims["iss"]
            if dp_id in self.revoked:
                return None
            for jwk in self.keys.get(dp_id, []):
                if thumbprint(jwk) == header.get("kid"):
                    key = jwt.PyJWK.from_dict(jwk).key
                    verified = jwt.decode(token, key, algorithms=["ES256"], audience=ISSUER)
                    if verified["exp"] - verified["iat"] > 300 or verified["sub"] != dp_id:
                        return None
                    return str(dp_id)
        except Exception as exc:
            self.refusals.append(repr(exc))
            return None
        return None

    async def Connect(self, request_iterator: Any, context: Any) -> None:
        wire = pb2()
        dp_id = self._verify(context)
        if dp_id is None and self.revoked:
            self.refusals.append("revoked")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "this data plane was revoked")
        if dp_id is None:
            self.refusals.append("identity")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown data plane identity")
        first = await context.read()
        if first is grpc.aio.EOF or first.WhichOneof("body") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be Hello")
        stream = Stream(first.hello)
        self.streams.append(stream)
        latest = self.log[-1].version if self.log else 0
        resume = first.hello.applied_config_version
        if resume > latest:
            resume = 0
        await context.write(wire.ControlPlaneMessage(welcome=wire.Welcome(
            projects=[wire.Project(project_id=p, workspace_id=w, org_id=o, name=n)
                      for p, w, o, n in self.projects],
            resume_from=resume, latest_config_version=latest,
            health_interval_s=self.health_interval_s, control_plane_version="fake")))

        async def reader() -> None:
            while True:
                message = await context.read()
                if message is grpc.aio.EOF:
                    return
                body = message.WhichOneof("body")
                if body == "ack":
                    stream.acks.append(message.ack.version)
                elif body == "health":
                    stream.health.append(message.health)
                elif body == "command_result":
                    stream.results.append(message.command_result)
                self.changed.set()

        reading = asyncio.create_task(reader())
        sent = resume
        try:
            while not reading.done():
                for change in [c for c in self.log if c.version > sent]:
                    await context.write(wire.ControlPlaneMessage(change=change))
                    stream.sent.append(change.version)
                    sent = change.version
                while not stream.commands.empty():
                    command = stream.commands.get_nowait()
                    await context.write(wire.ControlPlaneMessage(command=command))
                    if command.WhichOneof("body") == "revoke":
                        self.revoked.add(dp_id)
                        # Until the data plane's result is read and it closes (≤ 2 s).
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(asyncio.shield(reading), 2.0)
                        return
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.2)
        finally:
            stream.closed = True
            reading.cancel()


class FederationServer:
    """:class:`FakeFederation` served by a real grpc.aio server on ``port`` (0: free)."""

    def __init__(self, servicer: FakeFederation, port: int = 0) -> None:
        self.servicer = servicer
        self.port = port
        self._server: grpc.aio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> str:
        server = grpc.aio.server()
        pb2_grpc().add_FederationServicer_to_server(self.servicer, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server
        return self.endpoint

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
            self._server = None


async def until(condition: Any, timeout_s: float = 10.0, what: str = "condition") -> None:
    """Wait for ``condition()`` (sync or async) to be true, bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
