"""The control plane's end of the federation stream: a grpc.aio server of
``apiary.federation.v1.Federation/Connect`` (docs/architecture.md, "Federation").

One stream per data plane, dialled by the data plane:

1. **Authentication** from the call's metadata (``authorization: Bearer <identity JWT>``,
   :func:`~apiary.control.federation.verify_identity`): a forged, expired, unknown,
   pending or revoked identity ends the call with ``UNAUTHENTICATED``.
2. **Hello → Welcome.** The first message must be a Hello naming the JWT's data plane
   (else ``INVALID_ARGUMENT``). The Welcome carries its projects, ``resume_from`` (the
   Hello's applied version; 0 when that is ahead of the log: a full resync), the log's
   latest version and the health interval. A second stream of the same data plane
   replaces the first (the older is ended with ``ABORTED``).
3. **Config push.** Every ``poll_interval_s`` (0.25 s) the stream sends the entries the
   sending rule gives it (:func:`~apiary.control.federation.entries_for`: its entries in
   version order, with the replay of a project's earlier entries before the project's
   assignment) and the commands queued for it (``data_plane_commands``).
4. **From the data plane.** ConfigAck → ``data_planes.applied_config_version``; Health →
   ``data_planes.last_health`` and one ``data_plane_health`` row (rows older than an hour
   are deleted); CommandResult → the command's row (a RotateKey's new public key becomes
   the data plane's key, the old one accepted until it connects with the new one).
   Each is committed to cpdb before the next message is read. An AlertActivityReport is
   stored (:func:`~apiary.control.federation._activity.record_activity`: validated, only
   for a project this data plane serves, inserted once by its event id, a transition
   applied to the alert's state unless older than it) and, once committed (or refused for
   good), acknowledged with an AlertActivityAck of its event id; one that could not be
   stored (cpdb unavailable) is not acknowledged, and the data plane sends it again.
   A preview command (``alert_preview``) is sent as an AlertPreview, and its
   CommandResult's payload stored in the command's ``body["result"]``; one not sent
   within 10 s is never sent.
5. **Revocation** (``data_planes.status`` = revoked, seen within one poll): the stream
   sends the Revoke command and ends with ``UNAUTHENTICATED`` within ~2 s, whether or not
   the data plane answers.

Nothing sent on the stream is retried by the control plane: a data plane that missed
entries (a broken stream) gets them again when it resumes from its applied version.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NoReturn

import grpc
import jwt
from sqlalchemy import Engine, delete, select, update

import apiary
from apiary._private import metrics
from apiary.control._common import utcnow
from apiary.control.db import (
    ConfigChange,
    Database,
    DataPlane,
    DataPlaneCommand,
    DataPlaneHealth,
    Project,
)
from apiary.control.envelope import Envelope, envelope_from_settings
from apiary.control.federation._activity import (
    ALERT_PREVIEW,
    expire_previews,
    record_activity,
)
from apiary.control.federation._log import entries_for, latest_version, wire_payload
from apiary.control.federation._registry import (
    forget_previous_key,
    rotate_data_plane_key,
    verify_identity,
)
from apiary.errors import ApiaryError, AuthenticationFailed, ConfigurationError
from apiary.federation_wire import pb2, pb2_grpc
from apiary.settings import ApiarySettings

log = logging.getLogger("apiary.control.federation")

#: How long health reports are kept.
HEALTH_HISTORY = timedelta(hours=1)
#: How long a stream may take to send its Hello.
HELLO_TIMEOUT_S = 30.0
_KEEPALIVE = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
]


@dataclass(eq=False)
class _Stream:
    """One open stream of one data plane."""

    data_plane_id: str
    context: Any
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    #: Why the controller ends it (None: the data plane ended it).
    end: tuple[grpc.StatusCode, str] | None = None
    #: One write at a time (the pusher, and the reader's acknowledgements).
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def write(self, message: Any) -> None:
        async with self.write_lock:
            await self.context.write(message)

    def close(self, code: grpc.StatusCode, reason: str) -> None:
        if self.end is None:
            self.end = (code, reason)
        self.closed.set()


def _health_dict(health: Any) -> dict[str, Any]:
    return {
        "at_unix_ms": int(health.at_unix_ms), "ingest_rate": float(health.ingest_rate),
        "writer_lag": int(health.writer_lag), "dead_letters": int(health.dead_letters),
        "evaluator_backlog": int(health.evaluator_backlog),
        "storage_bytes": int(health.storage_bytes), "versions": dict(health.versions),
        "status": health.status or "ok", "reasons": list(health.reasons),
    }


def _change_message(change: ConfigChange, envelope: Callable[[], Envelope]) -> Any:
    doc = (change.payload if change.kind != "notification_channel"
           else wire_payload(change, envelope()))
    payload = b"" if doc is None else json.dumps(
        doc, separators=(",", ":"), sort_keys=True).encode()
    return pb2().ControlPlaneMessage(change=pb2().ConfigChange(
        version=change.version, kind=change.kind, project_id=change.project_id or "",
        object_id=change.object_id, deleted=change.deleted, payload=payload,
        changed_at_unix_ms=int(change.changed_at.timestamp() * 1000)))


def _command_message(command: DataPlaneCommand) -> Any:
    """The command on the wire; None for a kind this control plane does not know (it is
    marked failed, never sent as something else)."""
    wire = pb2()
    message = wire.Command(command_id=command.id)
    body = command.body or {}
    if command.kind == "drain":
        message.drain.CopyFrom(wire.Drain(enabled=bool(body.get("enabled"))))
    elif command.kind == "rotate_key":
        message.rotate_key.CopyFrom(wire.RotateKey())
    elif command.kind == "revoke":
        message.revoke.CopyFrom(wire.Revoke(reason=str(body.get("reason") or "")))
    elif command.kind == ALERT_PREVIEW:
        message.preview.CopyFrom(wire.AlertPreview(
            project_id=str(body.get("project_id") or ""), alert_id=str(body.get("alert_id") or ""),
            from_unix_s=int(body.get("from") or 0), to_unix_s=int(body.get("to") or 0)))
    else:
        return None
    return wire.ControlPlaneMessage(command=message)


def server_credentials(settings: ApiarySettings) -> grpc.ServerCredentials | None:
    """The TLS credentials of the federation endpoint (``federation_tls_cert_file`` and
    ``federation_tls_key_file``, read now: a renewed certificate is served from the next
    start), or None when none is set (plaintext). The settings checked the files when they
    loaded; a file that became unreadable since is a :class:`ConfigurationError`."""
    cert, key = settings.federation_tls_cert_file, settings.federation_tls_key_file
    if cert is None or key is None:
        return None
    try:
        chain, private = cert.read_bytes(), key.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            "cannot read the federation endpoint's TLS certificate or key; check "
            "APIARY_FEDERATION_TLS_CERT_FILE and APIARY_FEDERATION_TLS_KEY_FILE",
            path=str(exc.filename), error=exc.strerror or str(exc)) from None
    return grpc.ssl_server_credentials([(private, chain)])


class FederationServer:
    """The federation endpoint of one control plane (one per installation: the
    controller actor runs it). ``start()`` listens on ``settings.federation_grpc_port``
    (0 in ``port`` picks a free port, for tests) and returns the port."""

    def __init__(self, settings: ApiarySettings, engine: Engine | Database, *,
                 port: int | None = None, poll_interval_s: float = 0.25,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.database = engine if isinstance(engine, Database) else Database(engine)
        self._port = settings.federation_grpc_port if port is None else port
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        self._server: grpc.aio.Server | None = None
        self._streams: dict[str, _Stream] = {}
        self.bound_port: int | None = None
        self._envelope: Envelope | None = None

    def envelope(self) -> Envelope:
        """The control plane's envelope (loaded when a channel's secrets are first sent)."""
        if self._envelope is None:
            self._envelope = envelope_from_settings(self.settings)
        return self._envelope

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> int:
        """Listen; returns the port. Streams are served until :meth:`stop`."""
        server = grpc.aio.server(options=_KEEPALIVE)
        pb2_grpc().add_FederationServicer_to_server(_Servicer(self), server)
        host = self.settings.host
        address = f"[{host}]:{self._port}" if ":" in host else f"{host}:{self._port}"
        credentials = server_credentials(self.settings)
        if credentials is None:
            port = int(server.add_insecure_port(address))
        else:
            port = int(server.add_secure_port(address, credentials))
        if port == 0:
            raise OSError(f"cannot listen on {address} for the federation stream")
        await server.start()
        self._server, self.bound_port = server, port
        log.info("federation endpoint listening on %s:%d (%s)", host, port,
                 "TLS" if credentials is not None else "plaintext",
                 extra={"tls": credentials is not None})
        return port

    async def stop(self, grace_s: float = 1.0) -> None:
        """Close every stream and stop listening; data planes reconnect to the next one."""
        for stream in list(self._streams.values()):
            stream.close(grpc.StatusCode.UNAVAILABLE, "the control plane's controller stops")
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None

    def forget_connections(self) -> None:
        """Mark every data plane disconnected (a controller that starts has no stream;
        one that died could not say its streams ended)."""
        with self.database.transaction() as db:
            db.execute(update(DataPlane).where(DataPlane.connected.is_(True))
                       .values(connected=False))

    def connected(self) -> list[str]:
        """The data planes with an open stream here."""
        return sorted(self._streams)

    # --- database steps (run in a worker thread) --------------------------------------

    def _authenticate(self, token: str) -> tuple[str, str | None]:
        with self.database.transaction() as db:
            plane = verify_identity(db, token, issuer=self.settings.cp_issuer_url,
                                    now=self.clock())
            kid = jwt.get_unverified_header(token).get("kid")
            return plane.id, kid if isinstance(kid, str) else None

    def _welcome(self, dp_id: str, kid: str | None, hello: Any) -> tuple[Any, int]:
        wire = pb2()
        with self.database.transaction() as db:
            plane = db.get(DataPlane, dp_id)
            if plane is None or plane.status != "active":
                raise AuthenticationFailed("this data plane was revoked", data_plane_id=dp_id)
            forget_previous_key(plane, kid)
            now = self.clock()
            plane.connected, plane.last_seen_at = True, now
            plane.apiary_version = hello.apiary_version[:64] or plane.apiary_version
            plane.versions = dict(hello.versions) or plane.versions
            latest = latest_version(db)
            applied = int(hello.applied_config_version)
            resume = applied if applied <= latest else 0
            plane.applied_config_version = applied
            rows = db.execute(select(Project).where(Project.data_plane_id == dp_id)
                              .order_by(Project.id)).scalars()
            projects = [wire.Project(project_id=p.id, workspace_id=p.workspace_id,
                                     org_id=p.org_id, name=p.name) for p in rows]
            welcome = wire.ControlPlaneMessage(welcome=wire.Welcome(
                projects=projects, resume_from=resume, latest_config_version=latest,
                health_interval_s=float(self.settings.federation_health_interval_s),
                control_plane_version=apiary.__version__))
            return welcome, resume

    def _outgoing(self, dp_id: str, after: int) -> tuple[list[Any], int, list[Any], bool]:
        """New entries after ``after``, the commands not yet sent (marked sent), and
        whether the data plane was revoked."""
        with self.database.transaction() as db:
            plane = db.get(DataPlane, dp_id)
            revoked = plane is None or plane.status == "revoked"
            changes = [] if revoked else entries_for(db, dp_id, after)
            cursor = max([after, *(c.version for c in changes)])
            now = self.clock()
            expire_previews(db, dp_id, now)
            commands = list(db.scalars(
                select(DataPlaneCommand).where(DataPlaneCommand.data_plane_id == dp_id,
                                               DataPlaneCommand.sent_at.is_(None))
                .order_by(DataPlaneCommand.created_at, DataPlaneCommand.id)))
            messages = []
            for command in commands:
                command.sent_at = now
                message = _command_message(command)
                if message is None:
                    command.completed_at, command.ok = now, False
                    command.error = f"unknown command kind {command.kind!r}"
                    log.error("a command of an unknown kind was not sent", extra={
                        "data_plane_id": dp_id, "command_id": command.id,
                        "kind": command.kind})
                else:
                    messages.append(message)
            return ([_change_message(c, self.envelope) for c in changes], cursor,
                    messages, revoked)

    def _ack(self, dp_id: str, version: int) -> None:
        with self.database.transaction() as db:
            plane = db.get(DataPlane, dp_id)
            if plane is not None:
                plane.applied_config_version = version
                plane.last_seen_at = self.clock()

    def _health(self, dp_id: str, health: Any) -> None:
        report = _health_dict(health)
        now = self.clock()
        with self.database.transaction() as db:
            plane = db.get(DataPlane, dp_id)
            if plane is None:
                return
            plane.last_health = {**report, "received_at": now.isoformat()}
            plane.last_seen_at = now
            plane.draining = report["status"] == "draining"
            if report["versions"]:
                plane.versions = report["versions"]
            db.add(DataPlaneHealth(data_plane_id=dp_id, at=now, report=report))
            db.execute(delete(DataPlaneHealth).where(
                DataPlaneHealth.data_plane_id == dp_id,
                DataPlaneHealth.at < now - HEALTH_HISTORY))

    def _command_result(self, dp_id: str, result: Any) -> None:
        with self.database.transaction() as db:
            command = db.get(DataPlaneCommand, result.command_id)
            if command is None or command.data_plane_id != dp_id:
                log.warning("data plane %s answered an unknown command %s", dp_id,
                            result.command_id[:64])
                return
            command.completed_at = self.clock()
            command.ok, command.error = bool(result.ok), (result.error or None)
            if command.kind == ALERT_PREVIEW:
                if result.ok:
                    try:
                        command.body = {**(command.body or {}),
                                        "result": json.loads(result.payload or b"null")}
                    except ValueError:
                        command.ok, command.error = False, "the preview is not JSON"
                return
            plane = db.get(DataPlane, dp_id)
            if plane is None or not result.ok:
                return
            if command.kind == "rotate_key":
                try:
                    rotate_data_plane_key(db, plane, json.loads(result.public_jwk or b"null"))
                except (ApiaryError, ValueError) as exc:
                    command.ok, command.error = False, f"the new public key is refused: {exc}"
                    return
                log.info("data plane %s rotated its key", dp_id)
            elif command.kind == "drain":
                plane.draining = bool(command.body.get("enabled"))

    def _activity(self, dp_id: str, event_id: str, payload: bytes) -> None:
        with self.database.transaction() as db:
            record_activity(db, data_plane_id=dp_id, event_id=event_id, payload=payload,
                            now=self.clock())

    def _disconnected(self, dp_id: str) -> None:
        with self.database.transaction() as db:
            plane = db.get(DataPlane, dp_id)
            if plane is not None:
                plane.connected = False

    # --- one stream -------------------------------------------------------------------

    async def connect(self, requests: AsyncIterator[Any], context: Any) -> None:
        metadata = dict(context.invocation_metadata() or ())
        scheme, _, token = str(metadata.get("authorization", "")).partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED,
                               "send 'authorization: Bearer <identity JWT>'")
        try:
            dp_id, kid = await asyncio.to_thread(self._authenticate, token.strip())
        except AuthenticationFailed as exc:
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, exc.message)
        except ApiaryError as exc:  # cpdb unavailable: the data plane retries (back-off)
            await self._refuse(context, grpc.StatusCode.UNAVAILABLE, exc.message)
        iterator = aiter(requests)
        try:
            first = await asyncio.wait_for(anext(iterator), HELLO_TIMEOUT_S)
        except (StopAsyncIteration, TimeoutError):
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                               "the first message must be a Hello")
        if first.WhichOneof("body") != "hello":
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                               "the first message must be a Hello")
        if first.hello.data_plane_id != dp_id:
            await self._refuse(context, grpc.StatusCode.INVALID_ARGUMENT,
                               "the Hello's data_plane_id is not the identity's")
        try:
            welcome, cursor = await asyncio.to_thread(self._welcome, dp_id, kid, first.hello)
        except AuthenticationFailed as exc:
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, exc.message)
        stream = _Stream(dp_id, context)
        previous = self._streams.get(dp_id)
        if previous is not None:
            previous.close(grpc.StatusCode.ABORTED,
                           "replaced by a newer stream of this data plane")
        self._streams[dp_id] = stream
        metrics.set_gauge(metrics.CP_FEDERATION_STREAMS, len(self._streams))
        log.info("data plane %s connected (applied %d, version %s)", dp_id,
                 first.hello.applied_config_version, first.hello.apiary_version or "?")
        reader = asyncio.create_task(self._read(stream, iterator))
        try:
            await stream.write(welcome)
            await self._push(stream, cursor)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if self._streams.get(dp_id) is stream:
                del self._streams[dp_id]
                with contextlib.suppress(ApiaryError):
                    await asyncio.to_thread(self._disconnected, dp_id)
            metrics.set_gauge(metrics.CP_FEDERATION_STREAMS, len(self._streams))
            log.info("data plane %s disconnected (%s)", dp_id,
                     stream.end[1] if stream.end else "closed by the data plane")
        if stream.end is not None:
            await context.abort(*stream.end)

    async def _push(self, stream: _Stream, cursor: int) -> None:
        """Send entries and commands until the stream closes or the data plane is revoked
        (then the Revoke command goes out, and the stream ends)."""
        while not stream.closed.is_set():
            changes, cursor, commands, revoked = await asyncio.to_thread(
                self._outgoing, stream.data_plane_id, cursor)
            for message in changes:
                await stream.write(message)
            if changes:
                metrics.inc(metrics.CP_FEDERATION_CHANGES, len(changes))
            for message in commands:
                await stream.write(message)
            if revoked:
                if not any(m.command.WhichOneof("body") == "revoke" for m in commands):
                    await stream.write(pb2().ControlPlaneMessage(command=pb2().Command(
                        command_id="revoked", revoke=pb2().Revoke(reason="revoked"))))
                stream.close(grpc.StatusCode.UNAUTHENTICATED, "this data plane was revoked")
                log.warning("data plane %s was revoked: its stream is closed",
                            stream.data_plane_id)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream.closed.wait(), self.poll_interval_s)

    async def _read(self, stream: _Stream, iterator: AsyncIterator[Any]) -> None:
        dp_id = stream.data_plane_id
        try:
            async for message in iterator:
                kind = message.WhichOneof("body")
                if kind == "ack":
                    await asyncio.to_thread(self._ack, dp_id, int(message.ack.version))
                elif kind == "health":
                    await asyncio.to_thread(self._health, dp_id, message.health)
                elif kind == "command_result":
                    await asyncio.to_thread(self._command_result, dp_id,
                                            message.command_result)
                elif kind == "alert_activity":
                    await self._report(stream, message.alert_activity)
                elif kind == "hello":
                    stream.close(grpc.StatusCode.INVALID_ARGUMENT, "Hello is sent once")
                    return
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("data plane %s: reading its stream failed", dp_id)
            stream.close(grpc.StatusCode.INTERNAL, "the control plane failed to read")
            return
        stream.closed.set()

    async def _report(self, stream: _Stream, report: Any) -> None:
        """Store one alert activity, then acknowledge it; not acknowledged (sent again by
        the data plane) when cpdb could not store it."""
        event_id = str(report.event_id)
        try:
            await asyncio.to_thread(self._activity, stream.data_plane_id, event_id,
                                    bytes(report.payload))
        except ApiaryError as exc:
            log.warning("alert activity not stored (the data plane sends it again)", extra={
                "data_plane_id": stream.data_plane_id, "event_id": event_id[:200],
                "error": str(exc)})
            return
        except Exception:  # never storable as sent (a bug, a value cpdb refuses): dropped
            metrics.inc(metrics.CP_ALERT_ACTIVITY, outcome="refused")
            log.exception("alert activity refused: storing it failed", extra={
                "data_plane_id": stream.data_plane_id, "event_id": event_id[:200]})
        await stream.write(pb2().ControlPlaneMessage(
            alert_activity_ack=pb2().AlertActivityAck(event_id=event_id)))

    async def _refuse(self, context: Any, code: grpc.StatusCode, message: str) -> NoReturn:
        metrics.inc(metrics.CP_FEDERATION_REFUSED, code=code.name.lower())
        log.warning("federation stream refused (%s): %s", code.name, message)
        await context.abort(code, message)
        raise AssertionError("context.abort returns only by raising")


class _Servicer(pb2_grpc().FederationServicer):  # type: ignore[misc]
    def __init__(self, server: FederationServer) -> None:
        self._server = server

    async def Connect(self, request_iterator: AsyncIterator[Any],
                      context: Any) -> None:
        await self._server.connect(request_iterator, context)


__all__ = ["HEALTH_HISTORY", "FederationServer", "server_credentials"]
