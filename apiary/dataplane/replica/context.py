"""The state one data-plane replica serves requests with, and its admission control."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
from nats import errors as nats_errors
from nats.aio.client import Client
from starlette.requests import Request

from apiary._private import metrics
from apiary.dataplane.auth import Authenticator, Permission, Principal, bearer_credential
from apiary.dataplane.db.engine import DataPlaneDatabase, LazyDatabase
from apiary.dataplane.enrich import Enricher, PriceTable
from apiary.dataplane.replica.control_plane import ControlPlaneClient
from apiary.dataplane.replica.federation_state import KEY_REVOKED_SUBJECT, FederationFlags
from apiary.errors import Draining, PipelineBackpressure, TooManyRequests
from apiary.queue import (
    EVALUATION_STREAM,
    EVALUATORS_CONSUMER,
    EVENTS_STREAM,
    WRITERS_CONSUMER,
    EventPublisher,
    connect,
    consumer_backlog,
)
from apiary.ratelimit import ingest_rate_limiter, open_redis
from apiary.settings import ApiarySettings
from apiary.store import StoreClient, store_client

log = logging.getLogger("apiary.api")


class DataPlaneContext:
    """Connections (NATS, ClickHouse), the authenticator, and the replica's admission state.

    Admission: each credential is rate limited (``ingest_rate_limit_*``, per key across
    replicas when Redis is configured: 429); a replica processes at most
    ``ingest_max_inflight`` ingest requests at once (beyond that: 429), and refuses
    ingestion while the writers' backlog on the events stream exceeds
    ``ingest_backlog_limit`` messages (503). All carry ``Retry-After``. A federated data
    plane told to drain refuses ingestion with 503 ``draining`` (``federation``:
    :mod:`apiary.dataplane.replica.federation_state`, read with the backlog every 0.5 s).
    """

    def __init__(
        self,
        settings: ApiarySettings,
        nc: Client,
        store: StoreClient,
        authenticator: Authenticator,
        *,
        dpdb: DataPlaneDatabase | None = None,
        control_plane: ControlPlaneClient | None = None,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.js = nc.jetstream()
        self.store = store
        self.authenticator = authenticator
        self.publisher = EventPublisher(
            self.js,
            timeout=settings.ingest_publish_timeout_s,
            max_message_bytes=nc.max_payload,
            connection=nc,
        )
        # Enrichment with what this replica has seen (sessions of earlier requests); the
        # writer completes it with the store's knowledge.
        self.enricher = Enricher(PriceTable.bundled())
        self._redis = open_redis(settings)
        self.ingest_limiter = ingest_rate_limiter(settings, self._redis)
        # dpdb and the control-plane client open on first use unless given (see properties).
        self._dpdb = dpdb
        self._lazy_dpdb = LazyDatabase(settings.dp_database) if dpdb is None else None
        self._control_plane = control_plane
        self.inflight = 0
        self.backlog = 0
        self.federation = FederationFlags()
        self._federated = settings.federated
        self._watcher: asyncio.Task[None] | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []

    @classmethod
    async def open(
        cls,
        settings: ApiarySettings,
        nats_url: str,
        authenticator: Authenticator,
        *,
        store: StoreClient | None = None,
    ) -> DataPlaneContext:
        """Connect and start watching the backlog; ``store`` defaults to the configured one."""
        nc = await connect(nats_url, name="apiary-data-plane")
        context = cls(settings, nc, store or store_client(settings), authenticator)
        forget = getattr(authenticator, "forget_digest", None)
        if forget is not None:  # the control plane's key revocations, pushed (federation)
            await nc.subscribe(KEY_REVOKED_SUBJECT, cb=context._key_revoked)
        context._watcher = asyncio.create_task(context._watch_backlog())
        return context

    async def _key_revoked(self, msg: Any) -> None:
        """Forget a key the control plane revoked (federation_state's module doc)."""
        try:
            digest = orjson.loads(msg.data).get("key_sha256")
            if isinstance(digest, str) and digest:
                self.authenticator.forget_digest(bytes.fromhex(digest))  # type: ignore[attr-defined]
            else:
                self.authenticator.forget_all()  # type: ignore[attr-defined]
        except Exception as exc:  # a malformed notice: the cache cap still holds
            log.warning("a key revocation notice could not be applied",
                        extra={"error": repr(exc)})

    @property
    def dpdb(self) -> DataPlaneDatabase:
        """The data plane's metadata database (``settings.dp_database``), opened and
        migrated on first use. Blocking: use it from a worker thread."""
        if self._dpdb is not None:
            return self._dpdb
        assert self._lazy_dpdb is not None
        return self._lazy_dpdb.get()

    @property
    def control_plane(self) -> ControlPlaneClient:
        """The client of the control plane's configuration API (the trusted seam)."""
        if self._control_plane is None:
            self._control_plane = ControlPlaneClient.from_settings(self.settings)
        return self._control_plane

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Have :meth:`close` await ``closer`` (something a route started on first use,
        e.g. the draft evaluator's sandbox pool)."""
        self._closers.append(closer)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        for closer in self._closers:
            try:
                await closer()
            except Exception as exc:  # closing the rest matters more
                log.warning("a replica resource did not close", extra={"error": repr(exc)})
        if self._lazy_dpdb is not None:
            self._lazy_dpdb.dispose()
        if self._control_plane is not None:
            await self._control_plane.aclose()
        if self._redis is not None:
            await self._redis.aclose()
        try:
            await self.nc.drain()
        except nats_errors.ConnectionReconnectingError:
            # NATS is down: nothing can be flushed to it, and a replica must still stop.
            await self.nc.close()

    async def _watch_backlog(self) -> None:
        while True:
            try:
                self.backlog = await consumer_backlog(self.js, EVENTS_STREAM, WRITERS_CONSUMER)
                metrics.BACKLOG.set(self.backlog)
                metrics.CONSUMER_LAG.labels(EVENTS_STREAM).set(self.backlog)
                metrics.CONSUMER_LAG.labels(EVALUATION_STREAM).set(
                    await consumer_backlog(self.js, EVALUATION_STREAM, EVALUATORS_CONSUMER))
            except Exception as exc:  # keep the last value; the next poll may succeed
                log.debug("backlog poll failed", extra={"error": str(exc)})
            try:
                if self._federated:
                    await self.federation.poll(self.js)
            except Exception as exc:  # keep the last flags; the next poll may succeed
                log.debug("federation flags poll failed", extra={"error": str(exc)})
            await asyncio.sleep(0.5)

    async def principal(self, request: Request, permission: Permission) -> Principal:
        """Authenticate the request's bearer credential and check ``permission``."""
        credential = bearer_credential(request.headers.get("authorization"))
        principal = await self.authenticator.authenticate(credential)
        principal.require(permission)
        return principal

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold an ingest slot, or refuse with 429 (replica busy) / 503 (backlog too deep,
        or this data plane draining)."""
        if self.federation.draining:
            raise Draining(
                "this data plane is draining: it takes no new data for now; retry later",
                retry_after=30.0,
            )
        if self.inflight >= self.settings.ingest_max_inflight:
            raise TooManyRequests(
                "this ingest replica is at its concurrent request limit", retry_after=1.0,
                limit=self.settings.ingest_max_inflight,
            )
        if self.backlog > self.settings.ingest_backlog_limit:
            raise PipelineBackpressure(
                "the write pipeline is behind; retry later", retry_after=5.0,
                queue_depth=self.backlog, limit=self.settings.ingest_backlog_limit,
            )
        self.inflight += 1
        metrics.INFLIGHT.set(self.inflight)
        try:
            yield
        finally:
            self.inflight -= 1
            metrics.INFLIGHT.set(self.inflight)


def context_of(request: Request) -> DataPlaneContext:
    context: DataPlaneContext = request.app.state.dataplane
    return context
