"""The pipeline as ``apiary up`` runs it: a real nats-server, real local Ray, the chDB owner
actor and the writer actors, started by the one start-up sequence
(:class:`apiary.startup.sequence.DataPlaneServices`); batches are published to JetStream as a
replica publishes them, or posted over HTTP (:meth:`RayPipeline.http_ingest`): the real
data-plane app over ``httpx.ASGITransport`` with a real :class:`DataPlaneContext` on the same
nats-server and the chDB owner, taking OTLP/HTTP protobuf spans under a project's API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from apiary.credentials import mint_api_key
from apiary.dataplane.accounting import ingest_stats
from apiary.dataplane.app import create_app
from apiary.dataplane.auth import ApiKeyAuthenticator, Permission, Principal, StoredKey
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.errors import StoreUnavailable
from apiary.event import Event, EventBatch, new_event
from apiary.objects import LocalObjectStore
from apiary.queue import (
    EVENTS_STREAM,
    WIRE_SCHEMA,
    WRITERS_CONSUMER,
    EventPublisher,
    NatsServer,
    connect,
)
from apiary.settings import ApiarySettings
from apiary.startup.sequence import NODE_PLACEMENT, DataPlaneServices
from apiary.store import CLICKHOUSE_ACTOR_NAME, ActorStoreClient

__all__ = ["ACK_WAIT_S", "Answer", "HttpIngest", "RayPipeline", "Tally", "accounting_of",
           "assert_accounted", "assert_kept_exactly_once", "assert_only_200_or_503",
           "eventually", "settled_accounting", "under_stream", "wait_for"]

#: JetStream redelivers what a writer held after this long (kept short: the writer-kill
#: fault waits for it); the writer's heartbeats (``in_progress``) run every third of it.
ACK_WAIT_S = 6.0


def wait_for(condition: Callable[[], bool], wait_s: float, what: str,
             every_s: float = 0.2) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise AssertionError(f"{what}: not reached within {wait_s} s")


async def eventually(condition: Callable[[], Awaitable[bool]], wait_s: float, what: str,
                     every_s: float = 0.2) -> None:
    """:func:`wait_for` for an async condition."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(every_s)
    raise AssertionError(f"{what}: not reached within {wait_s} s")


class RayPipeline:
    """Starts nats-server, Ray, the chDB owner and ``writer_count`` writers on ``data_dir``."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.settings = ApiarySettings(data_dir=data_dir, ray_num_cpus=2, **settings)
        self.nats = NatsServer(data_dir)
        self.services: DataPlaneServices | None = None
        self._started_ray = False

    @property
    def objects_root(self) -> Path:
        """The local dead-letter store's directory."""
        return self.settings.data_dir / "objects"

    def start(self) -> None:
        import ray

        url = self.nats.start()
        services = self.services = DataPlaneServices(
            self.settings, url, NODE_PLACEMENT, client_name="faults")
        asyncio.run(services.ensure_streams())
        if not ray.is_initialized():
            ray.init(num_cpus=self.settings.ray_num_cpus, include_dashboard=False,
                     namespace="apiary", logging_level="WARNING", log_to_driver=False,
                     configure_logging=False,
                     object_store_memory=self.settings.ray_object_store_bytes)
            self._started_ray = True
        services.prepare_clickhouse()
        services.start_writers()

    def stop(self) -> None:
        import ray

        if self.services is not None:
            self.services.stop()
            self.services = None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
        self.nats.stop()

    # -- looking in -------------------------------------------------------------------------

    def owner(self) -> Any:
        import ray

        return ray.get_actor(CLICKHOUSE_ACTOR_NAME, namespace="apiary")

    def store(self) -> ActorStoreClient:
        return ActorStoreClient(self.owner())

    def writer(self) -> dict[str, Any]:
        """The one writer's stats (raises while Ray restarts it)."""
        assert self.services is not None
        [stats] = self.services.writer_stats()
        return stats

    def writer_or_none(self) -> dict[str, Any] | None:
        try:
            return self.writer()
        except Exception:  # dead or restarting
            return None

    def ensure_running(self) -> None:
        assert self.services is not None
        self.services.ensure_running()

    async def dead_letters(self) -> list[str]:
        return await LocalObjectStore(self.objects_root).keys(f"dlq/{EVENTS_STREAM}/")

    async def consumer(self) -> Any:
        nc = await connect(self.nats.url, name="faults-probe")
        try:
            return await nc.jetstream().consumer_info(EVENTS_STREAM, WRITERS_CONSUMER)
        finally:
            await nc.close()

    async def diagnosis(self) -> str:
        """The writer's stats, the consumer's and the stream's state: shown on a failure."""
        nc = await connect(self.nats.url, name="faults-probe")
        try:
            js = nc.jetstream()
            consumer = await js.consumer_info(EVENTS_STREAM, WRITERS_CONSUMER)
            stream = await js.stream_info(EVENTS_STREAM)
        finally:
            await nc.close()
        return (f"writer={self.writer_or_none()} consumer: delivered={consumer.delivered} "
                f"ack_floor={consumer.ack_floor} redelivered={consumer.num_redelivered} "
                f"stream={stream.state}")

    async def accounting(self, project: str) -> dict[str, dict[str, int]]:
        """:func:`accounting_of` ``project`` on this pipeline's nats-server and chDB owner."""
        return await accounting_of(self.nats.url, self.store(), project)

    async def drained(self) -> bool:
        info = await self.consumer()
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)

    # -- traffic ----------------------------------------------------------------------------

    async def publish_steadily(self, project: str, *, batches: int, per_batch: int,
                               interval_s: float) -> list[str]:
        """Publish ``batches`` spans batches of ``per_batch`` events, one every
        ``interval_s``; the event ids published (each acknowledged by JetStream)."""
        nc = await connect(self.nats.url, name="faults-publisher")
        published: list[str] = []
        try:
            publisher = EventPublisher(nc.jetstream(), timeout=10,
                                       max_message_bytes=nc.max_payload)
            for i in range(batches):
                events = _events(per_batch, i)
                await publisher.publish(_spans(project, events), msg_id=uuid.uuid4().hex)
                published.extend(e["event_id"] for e in events)
                await asyncio.sleep(interval_s)
        finally:
            await nc.close()
        return published

    @contextlib.asynccontextmanager
    async def http_ingest(self, project: str, **settings: Any) -> AsyncIterator[HttpIngest]:
        """The data plane in-process (the real app, a real :class:`DataPlaneContext` on this
        nats-server and the chDB owner) with one API key of ``project`` allowed to write;
        ``settings`` override the pipeline's for the plane (e.g. its publish timeout)."""
        config = self.settings.model_copy(update=settings)
        key = mint_api_key()
        principal = Principal(subject=f"key:{key.key_id}", org_id="o", workspace_id="w",
                              project_id=project,
                              permissions=frozenset({Permission.EVENTS_WRITE,
                                                     Permission.EVENTS_READ}),
                              workspace_permissions=frozenset())
        context = await DataPlaneContext.open(
            config, self.nats.url,
            ApiKeyAuthenticator([StoredKey(key.key_id, key.secret_hash, principal)]),
            store=self.store())
        transport = httpx.ASGITransport(app=create_app(context))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://dp",
                                         timeout=120) as http:
                yield HttpIngest(http, key.value, project)
        finally:
            await context.close()

    async def settle(self, ingest: HttpIngest, wait_s: float) -> Tally:
        """Wait (at most ``wait_s``) until every span answered 200 is stored and the writers
        hold nothing; then count, per event id, the rows stored (before any merge) and the
        session rollups against the sums over ``FINAL``."""
        store = self.store()
        accepted = ingest.accepted
        db = self.settings.clickhouse_database
        per_id: dict[str, int] = {}
        copies: list[int] = []  # rows of each (event, version): a re-write is not a copy

        async def stored() -> bool:
            try:
                rows = await store.query_rows(
                    f"SELECT event_id, version, count() AS n FROM `{db}`.events "
                    "WHERE project_id = {p:String} GROUP BY event_id, version",
                    {"p": ingest.project})
            except StoreUnavailable:
                return False
            per_id.clear()
            copies[:] = [int(r["n"]) for r in rows]
            for r in rows:
                per_id[str(r["event_id"])] = per_id.get(str(r["event_id"]), 0) + int(r["n"])
            return accepted <= per_id.keys() and await self.drained()

        await eventually(stored, wait_s, f"{len(accepted)} accepted spans stored and the "
                         "stream drained", every_s=0.5)
        settled_at = time.monotonic()
        accounting = await settled_accounting(ingest.stats, 30)
        rollup = (await store.query_rows(
            f"SELECT sum(cost) AS cost, sum(total_tokens) AS tokens FROM `{db}`.session_aggregates "
            "WHERE project_id = {p:String}", {"p": ingest.project}))[0]
        final = (await store.query_rows(
            f"SELECT sum(cost) AS cost, sum(total_tokens) AS tokens FROM `{db}`.events FINAL "
            "WHERE project_id = {p:String} AND event_type != 'session'",
            {"p": ingest.project}))[0]
        return Tally(accepted=len(accepted), stored=sum(1 for i in accepted if i in per_id),
                     stored_ids=set(per_id), duplicates=sum(n - 1 for n in copies),
                     dead_lettered=len(await self.dead_letters()),
                     rollup_cost=float(rollup["cost"]), final_cost=float(final["cost"]),
                     rollup_tokens=int(rollup["tokens"]), final_tokens=int(final["tokens"]),
                     settled_at=settled_at, accounting=accounting)

    async def publish_raw(self, subject: str, data: bytes) -> None:
        nc = await connect(self.nats.url, name="faults-publisher")
        try:
            await nc.jetstream().publish(subject, data, stream=EVENTS_STREAM,
                                         headers={"Nats-Msg-Id": uuid.uuid4().hex})
        finally:
            await nc.close()


def _events(n: int, seq: int) -> list[Event]:
    session = str(uuid.uuid4())
    trace = uuid.uuid4().hex
    start = 1.7e12 + seq * 1000
    events = [new_event(event_id=session, session_id=session, event_type="session",
                        trace_id=trace, start_time=start, end_time=start + 5)]
    events += [
        new_event(event_id=str(uuid.uuid4()), session_id=session, trace_id=trace,
                  parent_id=session, event_type="model", config={"model": "gpt-4o-mini"},
                  metadata={"prompt_tokens": 10, "completion_tokens": 5},
                  start_time=start + i, end_time=start + i + 1)
        for i in range(n - 1)
    ]
    return events


def _spans(project: str, events: list[Event]) -> EventBatch:
    return {"schema": WIRE_SCHEMA, "kind": "spans", "version": time.time_ns(),
            "tenant": {"org_id": "o", "workspace_id": "w", "project_id": project},
            "events": events}


# -- OTLP/HTTP ingestion --------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """What :meth:`RayPipeline.settle` counted once everything accepted was stored."""

    accepted: int  # distinct span ids answered 200
    stored: int  # of them, stored
    stored_ids: set[str]  # every event id of the project stored
    duplicates: int  # rows beyond one per event id and version (before merges)
    dead_lettered: int
    rollup_cost: float  # session_aggregates sums ...
    final_cost: float  # ... and the sums over events FINAL
    rollup_tokens: int
    final_tokens: int
    settled_at: float  # monotonic
    #: ``GET /v1/ingest/stats`` of the project once settled (accepted, stored,
    #: dead_lettered, in_flight: each ``{"messages", "rows"}``).
    accounting: dict[str, dict[str, int]] = field(default_factory=dict)


async def accounting_of(nats_url: str, store: Any, project: str) -> dict[str, dict[str, int]]:
    """The project's ingest accounting (:func:`apiary.dataplane.accounting.ingest_stats`,
    what ``GET /v1/ingest/stats`` answers), read directly: for faults that publish straight
    to JetStream."""
    nc = await connect(nats_url, name="faults-accounting")
    try:
        stats = await ingest_stats(nc.jetstream(), store, project)
    finally:
        await nc.close()
    return stats[project].total.as_dict()


async def settled_accounting(read: Callable[[], Awaitable[dict[str, Any]]],
                             wait_s: float) -> dict[str, dict[str, int]]:
    """``read()`` (an accounting) once nothing is in flight: the messages the writers
    acknowledged are recorded in the ledger before the ack, so this holds as soon as the
    stream is drained; a read refused while a fault heals (503) is read again."""
    seen: list[dict[str, Any]] = []

    async def settled() -> bool:
        try:
            counts = await read()
        except Exception:  # the store or JetStream still unavailable
            return False
        seen[:] = [counts]
        return bool(counts["in_flight"]["messages"] == 0)

    await eventually(settled, wait_s, "the ingest accounting shows nothing in flight")
    return {k: seen[0][k] for k in ("accepted", "stored", "dead_lettered", "in_flight")}


def assert_accounted(counts: dict[str, dict[str, int]], *, accepted: int, stored: int,
                     dead_lettered: int = 0, context: str = "") -> None:
    """The ingest accounting ``counts`` is exact: accepted == stored + dead-lettered (in
    messages and in rows), nothing in flight, and its rows are the spans the test knows
    were ``accepted`` (answered 200, or published and acknowledged by JetStream),
    ``stored`` (distinct events in the store) and ``dead_lettered``."""
    seen = f"accounting={counts} {context}"
    assert counts["in_flight"] == {"messages": 0, "rows": 0}, seen
    for unit in ("messages", "rows"):
        assert counts["accepted"][unit] == (counts["stored"][unit]
                                            + counts["dead_lettered"][unit]), seen
    assert counts["accepted"]["rows"] == accepted, seen
    assert counts["stored"]["rows"] == stored, seen
    assert counts["dead_lettered"]["rows"] == dead_lettered, seen


def assert_kept_exactly_once(ingest: HttpIngest, tally: Tally, context: str = "") -> None:
    """Every span answered 200 stored once, nothing else stored, nothing dead-lettered, no
    duplicate row, and the session rollups equal the sums over ``FINAL`` (and the tokens
    sent: each stored span counted once). ``context`` is shown on a failure."""
    sent = {i for a in ingest.answers for i in a.ids}
    requests = len({a.ids for a in ingest.answers})
    figures = {k: v for k, v in vars(tally).items() if k != "stored_ids"}
    seen = f"{figures} requests={requests} statuses={ingest.statuses()} {context}"
    assert tally.stored == tally.accepted > 0, seen
    assert tally.stored_ids <= sent, f"stored events that were never sent; {seen}"
    assert tally.duplicates == 0, seen
    assert tally.dead_lettered == 0, seen
    tokens = len(tally.stored_ids) * (PROMPT_TOKENS + COMPLETION_TOKENS)
    assert tally.final_tokens == tokens, seen
    assert tally.rollup_tokens == tokens, f"session rollups count spans twice; {seen}"
    assert tally.final_cost > 0, seen
    assert abs(tally.rollup_cost - tally.final_cost) <= 1e-9 * max(1.0, tally.final_cost), seen
    assert_accounted(tally.accounting, accepted=tally.accepted,
                     stored=len(tally.stored_ids), context=seen)


#: Tokens of each model span the stream sends (its cost is priced by the bundled table).
PROMPT_TOKENS, COMPLETION_TOKENS = 40, 12


@dataclass(frozen=True)
class Answer:
    """One ``POST /v1/traces`` attempt: its status, the event ids of the spans it carried,
    its ``Retry-After`` header, when it was sent (monotonic) and how long it took."""

    status: int
    ids: tuple[str, ...]
    retry_after: str | None
    sent_at: float
    seconds: float
    attempt: int


@dataclass
class HttpIngest:
    """Posts OTLP/HTTP protobuf requests to the in-process data plane and records every
    answer (:attr:`answers`, in the order they came)."""

    http: httpx.AsyncClient
    key: str
    project: str
    answers: list[Answer] = field(default_factory=list)
    _sent: int = 0

    @property
    def accepted(self) -> set[str]:
        """Event ids of the spans of every request answered 200."""
        return {i for a in self.answers if a.status == 200 for i in a.ids}

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for a in self.answers:
            counts[a.status] = counts.get(a.status, 0) + 1
        return counts

    async def stats(self) -> dict[str, Any]:
        """``GET /v1/ingest/stats`` with this project's key (raises on any status but 200)."""
        response = await self.http.get("/v1/ingest/stats",
                                       headers={"authorization": f"Bearer {self.key}"})
        response.raise_for_status()
        return dict(response.json())

    def oks_since(self, moment: float) -> int:
        """Requests sent at or after ``moment`` (monotonic) and answered 200."""
        return sum(1 for a in self.answers if a.status == 200 and a.sent_at >= moment)

    async def post(self, body: bytes, ids: tuple[str, ...], attempt: int = 1) -> Answer:
        started = time.monotonic()
        response = await self.http.post(
            "/v1/traces", content=body,
            headers={"content-type": "application/x-protobuf",
                     "authorization": f"Bearer {self.key}"})
        answer = Answer(response.status_code, ids, response.headers.get("retry-after"),
                        started, time.monotonic() - started, attempt)
        self.answers.append(answer)
        return answer

    async def send_until(self, stop: asyncio.Event, *, spans: int = 5, interval_s: float = 0.1,
                         workers: int = 2, give_up_s: float = 150.0) -> None:
        """A steady stream until ``stop`` is set: ``workers`` clients, each posting one
        request of ``spans`` spans (a session's model calls) every ``interval_s``. A request
        answered 503 is retried as an OTLP exporter retries it: the same body after
        ``Retry-After`` (capped at 1 s, to keep the test short), until it is answered 200
        or ``give_up_s`` passed; any other status ends it (the test asserts there is none)."""

        async def client() -> None:
            while not stop.is_set():
                body, ids = self._request(spans)
                first = time.monotonic()
                attempt = 1
                while True:
                    answer = await self.post(body, ids, attempt)
                    if answer.status != 503 or time.monotonic() - first > give_up_s:
                        break
                    attempt += 1
                    await asyncio.sleep(min(1.0, float(answer.retry_after or 1)))
                await asyncio.sleep(interval_s)

        await asyncio.gather(*(client() for _ in range(workers)))

    def _request(self, spans: int) -> tuple[bytes, tuple[str, ...]]:
        self._sent += 1
        session = str(uuid.uuid4())
        trace_id = uuid.uuid4().bytes
        now = time.time_ns()
        built, ids = [], []
        for i in range(spans):
            event_id = str(uuid.uuid4())
            ids.append(event_id)
            built.append(Span(
                trace_id=trace_id, span_id=uuid.uuid4().bytes[:8], name="chat gpt-4o-mini",
                kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=now + i * 1000,
                end_time_unix_nano=now + i * 1000 + 500,
                attributes=[_kv("honeyhive_event_id", event_id),
                            _kv("honeyhive.session_id", session),
                            _kv("gen_ai.request.model", "gpt-4o-mini"),
                            _kv("gen_ai.usage.input_tokens", PROMPT_TOKENS),
                            _kv("gen_ai.usage.output_tokens", COMPLETION_TOKENS),
                            _kv("faults.request", self._sent)]))
        request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
            resource={"attributes": [_kv("service.name", "faults")]},
            scope_spans=[ScopeSpans(scope={"name": "faults"}, spans=built)])])
        return request.SerializeToString(), tuple(ids)


def assert_only_200_or_503(ingest: HttpIngest, began: float, ended: float,
                           publish_timeout_s: float) -> list[Answer]:
    """Ingestion answered only 200 or 503 with ``Retry-After`` (never 500, never another
    status); each 503 within the publish timeout (no request hangs); none before the fault
    began; 200 again after it ended. The 503s."""
    assert set(ingest.statuses()) <= {200, 503}, ingest.statuses()
    refused = [a for a in ingest.answers if a.status == 503]
    assert all(a.retry_after and int(a.retry_after) >= 1 for a in refused)
    assert max((a.seconds for a in refused), default=0.0) <= publish_timeout_s + 3.0
    assert all(a.sent_at + a.seconds >= began for a in refused)
    assert ingest.oks_since(ended) > 0
    return refused


async def under_stream(pipeline: RayPipeline, ingest: HttpIngest,
                       fault: Callable[[], Awaitable[None]], *, workers: int = 3,
                       interval_s: float = 0.05) -> tuple[float, float]:
    """Run ``fault`` under a steady stream (:meth:`HttpIngest.send_until`) once the stream
    is being stored; keep streaming until requests sent after the fault answer 200 again,
    then stop it. The fault's start and end (monotonic)."""
    stop = asyncio.Event()
    stream = asyncio.create_task(ingest.send_until(stop, spans=5, interval_s=interval_s,
                                                   workers=workers))
    store = pipeline.store()

    async def storing() -> bool:
        return len(ingest.accepted) >= 50 and await store.count_events(ingest.project) > 0

    try:
        await eventually(storing, 60, "the stream accepted and being stored")
        began = time.monotonic()
        await fault()
        ended = time.monotonic()

        async def answering() -> bool:
            return ingest.oks_since(ended) >= 10

        await eventually(answering, 90, "ingestion answering 200 again after the fault")
    finally:
        stop.set()
        await asyncio.wait_for(stream, 200)
    return began, ended


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))
