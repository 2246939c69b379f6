"""The data plane's federation controller: one long-lived gRPC stream to the control plane
(docs/architecture.md, "Federation"; the wire: ``proto/apiary/federation/v1/federation.proto``).

:class:`DataPlaneController` dials out (a dedicated data plane sits behind its owner's
firewall) to the control plane's federation endpoint, authenticated by an identity JWT
signed with this data plane's own key (:mod:`.identity`), and then:

- **Hello / Welcome**: it says who it is, its versions and the highest config version it
  applied durably; the Welcome names the projects it serves (stored as the served set) and
  how often to report health.
- **Config push**: every ``ConfigChange`` is applied in the order received, durably and
  idempotently (:mod:`.apply`), and only then acknowledged (``ConfigAck`` with the highest
  version applied). A change the stream delivered but that was not acknowledged is sent
  again after a reconnect (the control plane resumes from the acknowledged version): nothing
  is skipped, and applying it again changes nothing.
- **Health** every ``health_interval_s``: ingest rate, writer lag (the ``writers``
  consumer's pending + ack-pending), dead letters, evaluator backlog, storage, versions and
  a status (:class:`HealthProbe`).
- **Alert activity**: while the stream is up, the alert transitions and delivery outcomes
  waiting in the ``alert-activity`` stream (durable consumer ``federation-activity``) are
  sent as ``AlertActivityReport`` s, at most :data:`ACTIVITY_IN_FLIGHT` unacknowledged at
  a time. A JetStream message is acknowledged only when the control plane's
  ``AlertActivityAck`` for its event id arrives (the control plane stored it, or refused it
  for good); the ones still unacknowledged when the stream ends are handed back (``nak``)
  and sent again on the next stream, and one the control plane does not acknowledge within
  the consumer's ack wait (30 s) comes back from JetStream and is sent again. So each is
  delivered at least once; the control plane stores it once (by event id).
- **Commands**: ``Drain`` sets the ``drain`` flag in the ``federation-state`` bucket, which
  every replica reads within about half a second and then refuses ingestion with 503
  ``draining``; ``RotateKey`` generates a new key pair, sends its public key, and signs with
  it from the next stream on (the old key is restored if the control plane refuses the new
  one, and deleted once it accepted it); ``Revoke`` records ``revoked`` (``/readyz`` reports
  it), closes the stream and never reconnects, deleting nothing; ``AlertPreview`` computes
  an alert rule's series (:func:`apiary.dataplane.alerts.preview.alert_preview`, over the
  rule pushed into ``federation-config``) and answers with it as JSON in the
  CommandResult's ``payload`` (``ok=false``, ``error`` "not found" when this data plane
  holds no such rule). A stream refused with
  ``UNAUTHENTICATED`` because the data plane "was revoked" (the command missed: the stream
  was down or ended first) is taken as the same revocation.
- **TLS** (:func:`channel_security`): the stream is dialled with TLS when the control plane
  said so at registration (``dp-identity.json``), when ``federation_endpoint`` is
  ``https://host:port`` or when ``federation_tls`` is set, verifying the control plane's
  certificate against ``federation_tls_ca_file`` or the system's roots. It never falls back
  to plaintext: a handshake that fails (an untrusted certificate, a plaintext server) is a
  connection error like any other, logged with its reason and retried with back-off.
- **Reconnect** with exponential back-off and full jitter (0.5 s doubling to
  ``federation_reconnect_max_s``, 5 s by default, a delay drawn uniformly below that), so the
  stream is back within seconds of an unreachable control plane's return; a stream that was
  welcomed resets it; a refused identity (``UNAUTHENTICATED``) waits the full 30 s
  (:data:`REFUSED_BACKOFF_S`), which spares a control plane that said no. Ingestion,
  storage and evaluation never wait for the stream: they run on this data plane alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

import apiary
from apiary._private import metrics
from apiary.dataplane.alerts.preview import preview_for, preview_store
from apiary.dataplane.federation.apply import Change, ConfigApplier
from apiary.dataplane.federation.identity import DataPlaneIdentity, load_identity
from apiary.dataplane.replica.federation_state import (
    CONNECTION_KEY,
    DRAIN_KEY,
    REVOKED_KEY,
    read_json,
)
from apiary.errors import ApiaryError, ConfigurationError, NotFound
from apiary.federation_wire import pb2, pb2_grpc
from apiary.queue import (
    ALERT_ACTIVITY_CONSUMER,
    ALERT_ACTIVITY_STREAM,
    EVALUATION_STREAM,
    EVALUATORS_CONSUMER,
    EVENTS_STREAM,
    WRITERS_CONSUMER,
    connect,
    consumer_backlog,
)
from apiary.settings import ApiarySettings
from apiary.store import StoreClient

log = logging.getLogger("apiary.dataplane.federation")

#: Back-off between reconnects: from this, doubling, up to the cap (for an unreachable
#: control plane ``federation_reconnect_max_s``; :data:`MAX_BACKOFF_S` when none is given).
MIN_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
#: The wait after the control plane refused this data plane's identity (``UNAUTHENTICATED``).
REFUSED_BACKOFF_S = 30.0
#: How often the slow parts of a health report (dead letters, disk) are recomputed.
SLOW_HEALTH_S = 60.0
#: Alert activities sent to the control plane and not yet acknowledged, at most.
ACTIVITY_IN_FLIGHT = 64
#: After this long unacknowledged, an activity no longer counts as in flight: JetStream
#: redelivers it (the ``federation-activity`` consumer's ack wait) and it is sent again.
ACTIVITY_RESEND_S = 30.0
#: How long one fetch of the ``alert-activity`` stream waits.
ACTIVITY_FETCH_S = 1.0


def backoff_delay(attempt: int, *, base: float = MIN_BACKOFF_S, cap: float = MAX_BACKOFF_S,
                  rng: Callable[[], float] = random.random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt))."""
    return rng() * min(cap, base * 2.0 ** min(attempt, 30))


def _system_roots() -> bytes | None:
    """The system's CA bundle (``SSL_CERT_FILE``, else OpenSSL's default file), or None
    (gRPC's bundled roots) when there is none."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            with contextlib.suppress(OSError):
                return Path(candidate).read_bytes()
    return None


def dials_tls(settings: ApiarySettings, identity_tls: bool, endpoint: str) -> bool:
    """Whether the stream is dialled with TLS: the control plane said so at registration,
    ``federation_tls`` is set, or the endpoint is ``https://host:port``."""
    return identity_tls or settings.federation_tls or endpoint.startswith("https://")


def channel_security(settings: ApiarySettings, identity_tls: bool, endpoint: str
                     ) -> tuple[str, grpc.ChannelCredentials | None]:
    """The target to dial (``host:port``) and its TLS credentials, or None for plaintext
    (module docstring, "TLS"). The CA file is read on each call, so a replaced one is used
    from the next stream on."""
    target = endpoint.removeprefix("https://")
    if not dials_tls(settings, identity_tls, endpoint):
        return target, None
    ca = settings.federation_tls_ca_file
    if ca is not None:
        try:
            roots: bytes | None = ca.read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                "cannot read the federation TLS CA file (APIARY_FEDERATION_TLS_CA_FILE)",
                path=str(ca), error=exc.strerror or str(exc)) from None
    else:
        roots = _system_roots()
    return target, grpc.ssl_channel_credentials(root_certificates=roots)


class Revoked(Exception):
    """The control plane revoked this data plane: stop, never reconnect."""


@dataclass
class HealthProbe:
    """What a Health report says, from JetStream (lags, the stream's accepted messages),
    the store's ingest ledger (dead letters) and the data directory (storage)."""

    settings: ApiarySettings
    store: StoreClient | None = None
    #: Makes ``store`` on first use (the chDB owner may not be up when the probe is made).
    store_factory: Callable[[], StoreClient] | None = None
    _last_seq: int | None = None
    _last_at: float = 0.0
    _slow_at: float = field(default=-1e18)
    _dead_letters: int = 0
    _disk_bytes: int = 0

    async def sample(self, nc: Client, *, draining: bool) -> dict[str, Any]:
        js = nc.jetstream()
        reasons: list[str] = []
        writer_lag = evaluator_backlog = 0
        rate = 0.0
        stream_bytes = 0
        try:
            writer_lag = await consumer_backlog(js, EVENTS_STREAM, WRITERS_CONSUMER)
            evaluator_backlog = await consumer_backlog(js, EVALUATION_STREAM,
                                                       EVALUATORS_CONSUMER)
            info = await js.stream_info(EVENTS_STREAM)
            seq, now = int(info.state.last_seq or 0), time.monotonic()
            stream_bytes = int(info.state.bytes or 0)
            if self._last_seq is not None and now > self._last_at:
                rate = max(0, seq - self._last_seq) / (now - self._last_at)
            self._last_seq, self._last_at = seq, now
        except Exception as exc:
            reasons.append(f"JetStream unreadable: {exc!r}")
        if time.monotonic() - self._slow_at >= SLOW_HEALTH_S:
            self._slow_at = time.monotonic()
            await self._slow()
        if writer_lag > self.settings.ready_backlog_limit:
            reasons.append(f"{writer_lag} unwritten messages > {self.settings.ready_backlog_limit}")
        status = "draining" if draining else ("degraded" if reasons else "ok")
        return {
            "at_unix_ms": int(time.time() * 1000), "ingest_rate": rate,
            "writer_lag": writer_lag, "dead_letters": self._dead_letters,
            "evaluator_backlog": evaluator_backlog,
            "storage_bytes": stream_bytes + self._disk_bytes,
            "versions": versions(nc), "status": status, "reasons": reasons,
        }

    async def _slow(self) -> None:
        if self.store is None and self.store_factory is not None:
            try:
                self.store = self.store_factory()
            except Exception as exc:  # no store yet: dead letters stay unknown (0)
                log.debug("event store not reachable for health", extra={"error": repr(exc)})
        if self.store is not None:
            try:
                rows = await asyncio.wait_for(self.store.ledger_totals(None, []), 10.0)
                self._dead_letters = sum(int(r["messages"]) for r in rows if r["dead"])
            except Exception as exc:  # keep the last value
                log.debug("dead letters unreadable", extra={"error": repr(exc)})
        if self.settings.embedded_clickhouse:
            self._disk_bytes = await asyncio.to_thread(_tree_bytes, self.settings.data_dir)


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def versions(nc: Client | None = None) -> dict[str, str]:
    """This data plane's component versions, for Hello and Health."""
    found = {"apiary": apiary.__version__, "python": platform.python_version(),
             "grpcio": grpc.__version__}
    if nc is not None and nc.is_connected:
        with contextlib.suppress(Exception):
            found["nats-server"] = str(nc.connected_server_version)
    return found


class DataPlaneController:
    """Keeps this data plane's federation stream (module docstring). ``run`` returns when
    :meth:`stop` is called or the data plane is revoked."""

    def __init__(
        self,
        settings: ApiarySettings,
        nats_url: str,
        *,
        identity: DataPlaneIdentity | None = None,
        store: StoreClient | None = None,
        store_factory: Callable[[], StoreClient] | None = None,
        rng: Callable[[], float] = random.random,
        min_backoff_s: float = MIN_BACKOFF_S,
        max_backoff_s: float | None = None,
        refused_backoff_s: float = REFUSED_BACKOFF_S,
    ) -> None:
        self.settings = settings
        self.nats_url = nats_url
        self._identity = identity
        self._probe = HealthProbe(settings, store, store_factory)
        self._rng = rng
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = (settings.federation_reconnect_max_s if max_backoff_s is None
                              else max_backoff_s)
        self.refused_backoff_s = refused_backoff_s
        self._stopping = asyncio.Event()
        self._call: Any = None
        self._write_lock = asyncio.Lock()
        self._nc: Client | None = None
        self.applier: ConfigApplier | None = None
        # What tests and the actor read:
        self.connected = False
        self.sessions = 0  # streams welcomed
        self.revoked = False
        self.last_error = ""
        self.delays: list[float] = []  # the back-off delays waited, in order
        #: The versions of the last changes received, in the order applied.
        self.received: deque[int] = deque(maxlen=1000)
        #: The last errors that ended a stream (or refused one), newest last.
        self.errors: deque[str] = deque(maxlen=20)
        #: Alert activities sent on this stream, not yet acknowledged: event id -> the
        #: JetStream messages carrying it (a redelivery adds one) and when last sent.
        self._in_flight: dict[str, tuple[list[Msg], float]] = {}
        self._acked = asyncio.Event()
        #: Previews being computed (answered when done; cancelled when the stream ends).
        self._previews: set[asyncio.Task[None]] = set()
        #: Alert activities sent and acknowledged (all streams).
        self.activity_sent = 0
        self.activity_acked = 0

    @property
    def identity(self) -> DataPlaneIdentity:
        if self._identity is None:
            self._identity = load_identity(self.settings.data_dir)
            if self._identity is None:
                raise ConfigurationError(
                    "this data plane has no federation identity (dp-identity.json); start it "
                    "with APIARY_BOOTSTRAP_TOKEN to register")
        return self._identity

    def endpoint(self) -> str:
        return self.settings.federation_endpoint or self.identity.federation_endpoint

    def tls(self) -> bool:
        """Whether the stream is dialled with TLS (module docstring, "TLS")."""
        return dials_tls(self.settings, self.identity.federation_tls, self.endpoint())

    def status(self) -> dict[str, Any]:
        return {"connected": self.connected, "sessions": self.sessions, "tls": self.tls(),
                "revoked": self.revoked, "last_error": self.last_error,
                "applied_config_version": self.applier.applied if self.applier else 0,
                "endpoint": self.endpoint(), "recent_errors": list(self.errors),
                "alert_activity": {"sent": self.activity_sent, "acked": self.activity_acked,
                                   "in_flight": len(self._in_flight)}}

    async def stop(self) -> None:
        """End the stream and :meth:`run` (which returns soon after)."""
        self._stopping.set()
        call = self._call
        if call is not None:
            call.cancel()

    async def run(self) -> None:
        """Dial, serve the stream, reconnect, until :meth:`stop` or a revocation."""
        self._nc = await connect(self.nats_url, name="apiary-dp-controller")
        try:
            self.applier = await ConfigApplier.open(self._nc, self.settings)
            revoked = await read_json(self.applier.state, REVOKED_KEY)
            if revoked is not None:
                self.revoked = True
                log.error("this data plane was revoked by the control plane; not connecting",
                          extra={"reason": revoked.get("reason")})
                return
            await self._loop()
        finally:
            self.connected = False
            with contextlib.suppress(Exception):
                await self._nc.close()

    async def _loop(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            refused = False
            welcomed = False
            try:
                welcomed = await self._session()
                self.last_error = "stream closed by the control plane"
            except Revoked:
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.CANCELLED and self._stopping.is_set():
                    return
                refused = exc.code() is grpc.StatusCode.UNAUTHENTICATED
                self.last_error = f"{exc.code().name}: {exc.details()}"
                if refused and "revoked" in (exc.details() or "").lower():
                    # Revoked while the Revoke command was not delivered (the stream was
                    # down, or ended first): the control plane's word is the same.
                    await self._revoked(exc.details() or "revoked")
                    return
                welcomed = self.connected  # the stream was up before it broke
            except asyncio.CancelledError:
                if self._stopping.is_set():
                    return
                raise
            except Exception as exc:  # the stream broke in any other way: reconnect
                self.last_error = repr(exc)
                welcomed = self.connected
            finally:
                await self._disconnected()
            if self._stopping.is_set():
                return
            if refused and self.identity.rotation_unconfirmed:
                self.identity.restore_previous()
            if refused:
                delay = self.refused_backoff_s
                log.error("the control plane refused this data plane's identity",
                          extra={"error": self.last_error})
            else:
                attempt = 0 if welcomed else attempt + 1
                delay = backoff_delay(attempt, base=self.min_backoff_s,
                                      cap=self.max_backoff_s, rng=self._rng)
                log.warning("federation stream down; reconnecting", extra={
                    "error": self.last_error, "delay_s": round(delay, 3)})
            self.delays.append(delay)
            self.errors.append(self.last_error)
            metrics.inc(metrics.FEDERATION_RECONNECTS,
                        cause="refused" if refused else "closed" if welcomed else "error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _disconnected(self) -> None:
        was = self.connected
        self.connected = False
        self._call = None
        metrics.set_gauge(metrics.FEDERATION_CONNECTED, 0)
        if was and self.applier is not None:
            with contextlib.suppress(Exception):
                await self.applier.state.put(CONNECTION_KEY, json.dumps(
                    {"connected": False, "at": time.time(), "error": self.last_error}).encode())

    async def _write(self, message: Any) -> None:
        async with self._write_lock:
            await self._call.write(message)

    async def _session(self) -> bool:
        """One stream, until it ends; whether it was welcomed."""
        assert self.applier is not None
        wire, identity = pb2(), self.identity
        target, credentials = channel_security(self.settings, identity.federation_tls,
                                               self.endpoint())
        channel = (grpc.aio.insecure_channel(target) if credentials is None
                   else grpc.aio.secure_channel(target, credentials))
        async with channel:
            stub = pb2_grpc().FederationStub(channel)
            self._call = call = stub.Connect(
                metadata=(("authorization", f"Bearer {identity.mint()}"),))
            if self._stopping.is_set():
                call.cancel()
            await self._write(wire.DataPlaneMessage(hello=wire.Hello(
                data_plane_id=identity.data_plane_id, apiary_version=apiary.__version__,
                versions=versions(self._nc), applied_config_version=self.applier.applied)))
            first = await call.read()
            if first is grpc.aio.EOF or first.WhichOneof("body") != "welcome":
                raise ConnectionError("the control plane did not answer the Hello with a Welcome")
            await self._welcomed(first.welcome)
            health = asyncio.create_task(self._health(first.welcome.health_interval_s or 5.0))
            activity = asyncio.create_task(self._forward_activity())
            try:
                while True:
                    message = await call.read()
                    if message is grpc.aio.EOF:
                        return True
                    body = message.WhichOneof("body")
                    if body == "change":
                        await self._change(message.change)
                    elif body == "command":
                        await self._command(message.command)
                    elif body == "alert_activity_ack":
                        await self._activity_acked(message.alert_activity_ack.event_id)
            finally:
                for task in (health, activity, *self._previews):
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                self._previews.clear()
                await self._hand_back_activity()

    async def _welcomed(self, welcome: Any) -> None:
        assert self.applier is not None
        await self.applier.set_projects({
            p.project_id: {"project_id": p.project_id, "workspace_id": p.workspace_id,
                           "org_id": p.org_id, "name": p.name}
            for p in welcome.projects})
        if self.identity.rotation_unconfirmed:
            self.identity.forget_previous()  # a stream opened with the new key: confirmed
        self.connected = True
        self.sessions += 1
        metrics.set_gauge(metrics.FEDERATION_CONNECTED, 1)
        await self.applier.state.put(CONNECTION_KEY, json.dumps({
            "connected": True, "at": time.time(), "endpoint": self.endpoint(),
            "resume_from": welcome.resume_from,
            "latest_config_version": welcome.latest_config_version}).encode())
        log.info("federation stream up", extra={
            "endpoint": self.endpoint(), "resume_from": welcome.resume_from,
            "latest_config_version": welcome.latest_config_version,
            "projects": len(welcome.projects)})

    async def _change(self, change: Any) -> None:
        assert self.applier is not None
        self.received.append(int(change.version))
        applied = await self.applier.apply(Change.of(
            change.version, change.kind, change.project_id, change.object_id, change.deleted,
            change.payload))
        metrics.set_gauge(metrics.FEDERATION_APPLIED_VERSION, applied)
        await self._write(pb2().DataPlaneMessage(ack=pb2().ConfigAck(version=applied)))

    # --- alert activity -----------------------------------------------------------------

    async def _forward_activity(self) -> None:
        """Send the ``alert-activity`` stream's messages on this stream (module docstring),
        until cancelled (the stream ended). Trouble with JetStream is logged and retried:
        the activities wait in their stream meanwhile."""
        assert self._nc is not None
        wire = pb2()
        sub = None
        try:
            while True:
                try:
                    if sub is None:
                        sub = await self._nc.jetstream().pull_subscribe_bind(
                            ALERT_ACTIVITY_CONSUMER, ALERT_ACTIVITY_STREAM)
                    free = ACTIVITY_IN_FLIGHT - self._activity_pending()
                    if free <= 0:
                        self._acked.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._acked.wait(), ACTIVITY_FETCH_S)
                        continue
                    try:
                        msgs = await sub.fetch(batch=free, timeout=ACTIVITY_FETCH_S)
                    except (TimeoutError, nats.errors.TimeoutError):
                        continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the stream, the consumer: try again shortly
                    log.warning("alert activity not readable; retrying", extra={
                        "error": repr(exc)})
                    await asyncio.sleep(ACTIVITY_FETCH_S)
                    continue
                for msg in msgs:
                    event_id = _activity_id(msg)
                    held, _sent = self._in_flight.get(event_id, ([], 0.0))
                    self._in_flight[event_id] = ([*held, msg], time.monotonic())
                    await self._write(wire.DataPlaneMessage(alert_activity=(
                        wire.AlertActivityReport(event_id=event_id, payload=msg.data))))
                    self.activity_sent += 1
                    metrics.inc(metrics.FEDERATION_ALERT_ACTIVITY, outcome="sent")
        finally:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    def _activity_pending(self) -> int:
        """Activities in flight, forgetting those sent longer ago than the ack wait (they
        come back from JetStream and are sent again)."""
        stale = time.monotonic() - ACTIVITY_RESEND_S
        for event_id in [e for e, (_m, at) in self._in_flight.items() if at < stale]:
            del self._in_flight[event_id]
        return len(self._in_flight)

    async def _activity_acked(self, event_id: str) -> None:
        """The control plane stored ``event_id``: acknowledge its JetStream messages (the
        server confirms; an acknowledgement lost here only means it is sent again)."""
        held, _sent = self._in_flight.pop(event_id, ([], 0.0))
        for msg in held:
            try:
                await msg.ack_sync(timeout=5.0)
            except Exception as exc:
                log.debug("alert activity acknowledgement lost; it is sent again", extra={
                    "event_id": event_id, "error": repr(exc)})
        if held:
            self.activity_acked += 1
            metrics.inc(metrics.FEDERATION_ALERT_ACTIVITY, outcome="acked")
        self._acked.set()

    async def _hand_back_activity(self) -> None:
        """The stream ended: the unacknowledged activities go back to JetStream at once, for
        the next stream."""
        held = [msg for msgs, _at in self._in_flight.values() for msg in msgs]
        self._in_flight.clear()
        for msg in held:
            with contextlib.suppress(Exception):
                await msg.nak()

    async def _health(self, interval_s: float) -> None:
        assert self.applier is not None
        wire = pb2()
        while True:
            try:
                drain = await read_json(self.applier.state, DRAIN_KEY) or {}
                assert self._nc is not None
                report = await self._probe.sample(self._nc, draining=bool(drain.get("enabled")))
                await self._write(wire.DataPlaneMessage(health=wire.Health(**report)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a missed report; the next one may go through
                log.debug("health report not sent", extra={"error": repr(exc)})
            await asyncio.sleep(interval_s)

    def _query_store(self) -> StoreClient:
        """The event store the previews read (the health probe's, else a new one)."""
        probe = self._probe
        if probe.store is None:
            probe.store = (probe.store_factory() if probe.store_factory is not None
                           else preview_store(self.settings))
        return probe.store

    async def _preview(self, command_id: str, preview: Any) -> None:
        """Answer an AlertPreview: the rule's series as JSON, or ok=false with the error
        ("not found" for a rule this data plane does not hold)."""
        assert self._nc is not None
        wire = pb2()
        result = wire.CommandResult(command_id=command_id, ok=True)
        try:
            found = await preview_for(
                self._nc.jetstream(), self._query_store(), preview.project_id,
                preview.alert_id, int(preview.from_unix_s), int(preview.to_unix_s))
            result.payload = json.dumps(found, separators=(",", ":")).encode()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            result.ok, result.error = False, _preview_error(exc)
            log.info("alert preview failed", extra={
                "alert_id": preview.alert_id, "project_id": preview.project_id,
                "error": result.error})
        await self._write(wire.DataPlaneMessage(command_result=result))

    async def _record_revoked(self, reason: str) -> None:
        assert self.applier is not None
        await self.applier.state.put(REVOKED_KEY, json.dumps(
            {"reason": reason, "at": time.time()}).encode())

    async def _revoked(self, reason: str) -> None:
        """Record a revocation the control plane stated by refusing the stream; stop."""
        with contextlib.suppress(Exception):  # /readyz's word; the stream stops regardless
            await self._record_revoked(reason)
        self.revoked = True
        log.error("this data plane was revoked by the control plane; it will not reconnect",
                  extra={"reason": reason})

    async def _command(self, command: Any) -> None:
        assert self.applier is not None
        wire = pb2()
        which = command.WhichOneof("body")
        if which == "preview":  # computed aside: the stream goes on meanwhile
            task = asyncio.create_task(self._preview(command.command_id, command.preview))
            self._previews.add(task)
            task.add_done_callback(self._previews.discard)
            return
        result = wire.CommandResult(command_id=command.command_id, ok=True)
        revoke = False
        try:
            if which == "drain":
                await self.applier.state.put(DRAIN_KEY, json.dumps(
                    {"enabled": command.drain.enabled, "at": time.time()}).encode())
                log.warning("drain %s by the control plane",
                            "started" if command.drain.enabled else "ended")
            elif which == "rotate_key":
                result.public_jwk = json.dumps(self.identity.begin_rotation()).encode()
            elif which == "revoke":
                await self._record_revoked(command.revoke.reason)
                revoke = True
            else:
                result.ok, result.error = False, f"unknown command {which!r}"
        except Exception as exc:
            result.ok, result.error = False, repr(exc)
        await self._write(wire.DataPlaneMessage(command_result=result))
        if which == "rotate_key" and result.ok:
            self.identity.commit_rotation()  # the next stream signs with the new key
        if revoke:
            self.revoked = True
            log.error("this data plane was revoked by the control plane; the stream is closed "
                      "and will not reconnect", extra={"reason": command.revoke.reason})
            with contextlib.suppress(Exception):
                await self._call.done_writing()
            raise Revoked(command.revoke.reason)


def _activity_id(msg: Msg) -> str:
    """The event id an activity was published under (its ``Nats-Msg-Id``), else one from
    its stream sequence (the control plane then refuses it, and that is acknowledged)."""
    ident = (msg.headers or {}).get("Nats-Msg-Id")
    if ident:
        return str(ident)
    return f"seq.{msg.metadata.sequence.stream}"


def _preview_error(exc: Exception) -> str:
    if isinstance(exc, NotFound):
        return "not found"
    if isinstance(exc, ApiaryError):
        return exc.message[:1000]
    return repr(exc)[:1000]


@dataclass
class _Restarts:
    loop_restarts: int = 0
    last_error: str = ""


class ControllerService:
    """The controller supervised as the writers are (:func:`apiary.queue.outcomes.
    start_supervised`): a ``run`` that fails is started again with back-off, a revoked data
    plane's is not. What :class:`apiary.actors.dp_controller.DataPlaneControllerActor` runs."""

    def __init__(self, settings: ApiarySettings, nats_url: str, *,
                 store_factory: Callable[[], StoreClient] | None = None) -> None:
        self.controller = DataPlaneController(settings, nats_url, store_factory=store_factory)
        self._settings = settings
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._restarts = _Restarts()

    async def _run(self) -> None:
        await self.controller.run()
        if self.controller.revoked:
            self._stopping.set()  # revoked: nothing to restart

    async def start(self) -> None:
        """Start the supervised controller; idempotent while it runs."""
        from apiary.queue.outcomes import start_supervised

        if self._stopping.is_set() or (self._task is not None and not self._task.done()):
            return
        self._task = start_supervised(self._run, self._restarts, loop="federation",
                                      stopping=self._stopping, log=log, previous=self._task)

    async def ensure_running(self) -> None:
        await self.start()

    def status(self) -> dict[str, Any]:
        found = self.controller.status()
        found.update(running=self._task is not None and not self._task.done(),
                     loop_restarts=self._restarts.loop_restarts,
                     supervisor_error=self._restarts.last_error)
        return found

    async def stop(self) -> None:
        self._stopping.set()
        await self.controller.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


__all__ = ["MAX_BACKOFF_S", "MIN_BACKOFF_S", "REFUSED_BACKOFF_S", "ControllerService",
           "DataPlaneController", "HealthProbe", "Revoked", "backoff_delay", "channel_security",
           "dials_tls", "versions"]
