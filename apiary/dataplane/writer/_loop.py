"""The writer's loop: pull batches from JetStream, enrich, insert as Arrow, then acknowledge.

Guarantees:

- **Nothing acknowledged before it is stored.** A message is acked only after the insert
  that contains its events succeeded; a crash before that makes JetStream redeliver it.
- **Nothing stored twice.** Each insert carries a deduplication token derived from its
  messages' ids and its rows (:func:`~apiary.store.insert_dedup_token`), the same on every
  retry: an insert that timed out after ClickHouse committed it is retried and stores
  nothing more, in ``events`` or in the session rollups. A redelivered message (delivery
  count > 1) or a replayed dead letter (:mod:`apiary.queue.dead_letters`) may already be in
  ClickHouse; its events whose stored version is at least the message's are dropped before
  the insert. Reads collapse versions anyway
  (ReplacingMergeTree), and this keeps the aggregate tables exact too.
- **Transient failures are retried** with exponential back-off while the messages are kept
  alive (``in_progress`` at least every third of ``ack_wait``, in every stage of a flush and
  while a flush waits for its slot), for as long as it takes: no delivery is burned and
  nothing is dead-lettered for it. The chDB owner's death is such a failure
  (:class:`~apiary.errors.StoreUnavailable` until Ray has restarted it). The backlog that
  builds up makes ingestion answer 503 instead of accepting more than can be written.
- **A failed dead letter never stops the writer**: the message stays in the stream, held,
  until its record is durable (:mod:`apiary.queue.outcomes`).
- **A poison message never blocks the stream.** A batch the store rejects is split until
  the offending message is isolated; that message goes to the dead-letter object store with
  its error, and is then terminated on the stream. Undecodable messages go there directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast, overload

import nats.errors
import orjson
import pyarrow as pa
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from apiary._private import metrics
from apiary.dataplane.enrich import Enricher, PriceTable, SessionContext
from apiary.dataplane.evaluation import online as online_evaluation
from apiary.dataplane.writer import _lookups as lookups
from apiary.dataplane.writer._backfill import SessionBackfill
from apiary.dataplane.writer._relink import TraceRelinker
from apiary.dataplane.writer._updates import UpdateApplier
from apiary.errors import PoisonMessage, StoreError, StoreRejected
from apiary.event import Event, EventBatch
from apiary.objects import ObjectStore
from apiary.queue import (
    ARROW_ENCODING,
    ENCODING_HEADER,
    EVENTS_STREAM,
    WIRE_SCHEMA,
    WRITERS_CONSUMER,
    decode_batch,
    decode_table,
)
from apiary.queue.dead_letters import replayed
from apiary.queue.heartbeats import Heartbeat
from apiary.queue.outcomes import Outcomes, deliveries
from apiary.settings import ApiarySettings
from apiary.store import StoreClient, arrow_to_events, events_to_arrow, insert_dedup_token

log = logging.getLogger("apiary.writer")

#: The messages of the flush running in this task: a store call retried anywhere in it
#: (look-ups, relinking, back-fill, the redelivery check, the insert) keeps them alive.
_HOLDING: ContextVar[list[_Received] | None] = ContextVar("apiary_writer_holding",
                                                          default=None)


def message_id(msg: Msg) -> str:
    """What identifies ``msg`` in an insert's deduplication token: its stream sequence
    (unique in the stream) and its ``Nats-Msg-Id``."""
    try:
        sequence = str(msg.metadata.sequence.stream)
    except Exception:  # not a JetStream delivery (no reply subject to parse)
        sequence = ""
    return f"{sequence}:{(msg.headers or {}).get('Nats-Msg-Id', '')}"


class _LazyEvents(Sequence[Event]):
    """The events of Arrow rows, turned into dicts only if something iterates them."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table
        self._events: list[Event] | None = None

    def _all(self) -> list[Event]:
        if self._events is None:
            self._events = arrow_to_events(self._table)
        return self._events

    def __bool__(self) -> bool:
        return bool(self._table.num_rows > 0)

    def __len__(self) -> int:
        return int(self._table.num_rows)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        return self._all()[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self._all())


@dataclass(slots=True)
class _Received:
    """One message in a flush: a JSON batch (``batch["events"]``), or Arrow rows (``table``,
    with ``batch`` holding the envelope) until something needs them as dicts."""

    msg: Msg
    batch: EventBatch
    deliveries: int
    table: pa.Table | None = None
    inherited: frozenset[str] = frozenset()
    #: The batch as received, kept when a redelivery drops events already stored: the
    #: after-write hooks still see them (their tasks may not have been published).
    received_as: EventBatch | None = None

    @property
    def rows(self) -> int:
        return self.table.num_rows if self.table is not None else len(self.batch["events"])

    def materialize(self) -> None:
        """Continue with event dicts (for patches of these events, say)."""
        if self.table is not None:
            self.batch["events"] = arrow_to_events(self.table)
            self.table = None

    def for_hooks(self) -> EventBatch:
        """The batch as after-write hooks read it: Arrow rows become dicts only if read."""
        if self.received_as is not None:
            return self.received_as
        if self.table is None:
            return self.batch
        lazy: EventBatch = {**self.batch, "events": cast(list[Event], _LazyEvents(self.table))}
        return lazy


@dataclass
class WriterStats:
    """Counters of one writer since it started; exported as Prometheus metrics."""

    messages: int = 0
    events_written: int = 0
    inserts: int = 0
    redelivered_messages: int = 0
    duplicates_dropped: int = 0
    insert_retries: int = 0
    dead_lettered: int = 0
    dead_letter_failures: int = 0  # dead-letter writes that failed (each retried)
    dead_letters_pending: int = 0  # messages held until their dead letter is durable
    loop_restarts: int = 0  # times the loop ended with an exception and was started again
    last_insert_rows: int = 0
    last_insert_seconds: float = 0.0
    last_error: str = ""
    started_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class WriterLoop:
    """One writer's consume → enrich → insert → ack loop over the ``writers`` consumer."""

    def __init__(
        self,
        *,
        js: JetStreamContext,
        store: StoreClient,
        objects: ObjectStore,
        settings: ApiarySettings,
        name: str,
        prices: PriceTable | None = None,
    ) -> None:
        self._js = js
        self._store = store
        self._settings = settings
        self._database = settings.clickhouse_database
        self.name = name
        self._enricher = Enricher(prices or PriceTable.bundled())
        self.stats = WriterStats()
        self._outcomes = Outcomes(stream=EVENTS_STREAM, objects=objects, stats=self.stats,
                                  log=log, what="message",
                                  keep_alive_s=settings.writer_ack_wait_s / 3)
        self._stopping = asyncio.Event()
        self._flush_slots = asyncio.Semaphore(2)
        self._flushes: set[asyncio.Task[None]] = set()
        self.updates = UpdateApplier(store=store, enricher=self._enricher, retrying=self._retrying,
                                     dead_letter=self._outcomes.dead_letter)
        self.relinker = TraceRelinker(store=store, enricher=self._enricher,
                                      retrying=self._retrying)
        self.backfill = SessionBackfill(store=store, enricher=self._enricher,
                                        retrying=self._retrying)

    def stop(self) -> None:
        """Ask the loop to finish: it stops fetching, writes what it holds, and returns."""
        self._stopping.set()

    async def run(self) -> None:
        sub = await self._js.pull_subscribe_bind(
            WRITERS_CONSUMER, EVENTS_STREAM, pending_bytes_limit=512 * 1024 * 1024
        )
        batch_rows = self._settings.writer_batch_rows
        interval = self._settings.writer_flush_interval_s
        pending: list[_Received] = []
        rows = 0
        first_at = 0.0
        self.updates.start()
        # Readiness (/readyz) reads this: a writer whose beats stop has died or hangs.
        running = [True]
        heartbeat = Heartbeat(self._js, "writer", self.name, running=lambda: running[0],
                              error=lambda: self.stats.last_error)
        beating = asyncio.create_task(heartbeat.run())
        try:
            while not self._stopping.is_set():
                wait = interval if not pending else first_at + interval - time.monotonic()
                try:
                    msgs = await sub.fetch(batch=256, timeout=max(wait, 0.02))
                except (TimeoutError, nats.errors.TimeoutError):
                    msgs = []
                except nats.errors.Error as exc:
                    self.stats.last_error = f"fetch: {exc}"
                    await asyncio.sleep(0.5)
                    msgs = []
                for msg in msgs:
                    received = await self._receive(msg)
                    if received is None:
                        continue
                    if not pending:
                        first_at = time.monotonic()
                    pending.append(received)
                    rows += received.rows
                if pending and (rows >= batch_rows or time.monotonic() - first_at >= interval):
                    await self._start_flush(pending)
                    pending, rows = [], 0
            if pending:
                await self._start_flush(pending)
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
            if self._stopping.is_set():
                await heartbeat.clear()
            else:  # ended by an exception: say so until a restart beats again
                running[0] = False
                await heartbeat.beat()
            if self._flushes:
                await asyncio.gather(*self._flushes, return_exceptions=True)
            await self.updates.stop()
            if self._stopping.is_set():  # a restart after a crash keeps retrying them
                await self._outcomes.close()
            with contextlib.suppress(Exception):  # a dead connection: nothing to undo
                await sub.unsubscribe()

    async def _receive(self, msg: Msg) -> _Received | None:
        self.stats.messages += 1
        delivered = deliveries(msg)
        if delivered > 1:
            self.stats.redelivered_messages += 1
        try:
            if (msg.headers or {}).get(ENCODING_HEADER) == ARROW_ENCODING:
                rows = decode_table(msg.data)
                envelope: EventBatch = {"schema": WIRE_SCHEMA, "kind": rows.kind,
                                        "tenant": rows.tenant, "version": rows.version,
                                        "events": []}
                return _Received(msg, envelope, delivered, rows.table,
                                 rows.inherited_sessions)
            batch = decode_batch(msg.data)
        except PoisonMessage as exc:
            await self._outcomes.dead_letter(msg, exc)
            return None
        return _Received(msg, batch, delivered)

    async def _start_flush(self, received: list[_Received]) -> None:
        # Both slots may be held by flushes waiting for the store (its owner restarting):
        # keep these messages alive meanwhile, so that JetStream does not hand them to
        # another writer while they wait here.
        period = max(self._settings.writer_ack_wait_s / 3, 0.05)
        while True:
            try:
                await asyncio.wait_for(self._flush_slots.acquire(), timeout=period)
                break
            except TimeoutError:
                await asyncio.gather(*(r.msg.in_progress() for r in received),
                                     return_exceptions=True)
        task = asyncio.create_task(self._flush(received))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, received: list[_Received]) -> None:
        _HOLDING.set(received)  # every store retry of this flush keeps these alive
        try:
            for r in received:
                # Patches wait for some of these events: continue with them as dicts.
                if r.table is not None and self.updates.awaits_any(
                        r.batch["tenant"]["project_id"], r.table.column("event_id")):
                    r.materialize()
            await self.updates.prepare(received)  # patches (PUT /events): see _updates.py
            await self._enrich(received)
            # Before redelivered events are dropped: a flush handed back mid-move must
            # still find the session its (already stored) root names.
            await self.relinker.settle(received)  # late session names: see _relink.py
            await self.backfill.settle(received)  # late session events: see _backfill.py
            await self._drop_already_stored(received)
            await self._insert(received)
        except Exception as exc:  # a bug or an unexpected store answer: never lose the batch
            log.exception("flush failed; handing the batch back", extra={"error": str(exc)})
            self.stats.last_error = f"flush: {exc!r}"
            await self._hand_back(received, exc)
        finally:
            self._flush_slots.release()

    async def _hand_back(self, received: list[_Received], error: Exception) -> None:
        """Let JetStream redeliver later (with back-off), or dead-letter at the last try
        (:mod:`apiary.queue.outcomes`): the writer's last try is the one before
        ``writer_max_deliver``."""
        last = self._settings.writer_max_deliver - 1
        for r in received:
            await self._outcomes.hand_back(r.msg, r.deliveries, error, last_delivery=last)

    # -- enrichment -----------------------------------------------------------------------

    async def _enrich(self, received: list[_Received]) -> None:
        """Enrich in place. A failed store look-up degrades enrichment; it never blocks."""
        by_project: dict[str, list[_Received]] = {}
        for r in received:
            by_project.setdefault(r.batch["tenant"]["project_id"], []).append(r)
        for project_id, group in by_project.items():
            events = [e for r in group for e in r.batch["events"]]
            needed = self._enricher.lookups(project_id, events)
            for r in group:
                if r.table is not None:
                    more = self._enricher.table_lookups(project_id, r.table, r.inherited)
                    needed.traces |= more.traces
                    needed.sessions |= more.sessions
            if needed:
                try:
                    traces, sessions = await self._look_up(
                        project_id, needed.traces, needed.sessions
                    )
                except StoreError as exc:
                    log.warning("enrichment look-up failed", extra={"error": str(exc)})
                    traces, sessions = {}, {}
                self._enricher.learn(
                    project_id, traces=traces, sessions=sessions, asked=needed
                )
            self._enricher.enrich(project_id, events)
            for r in group:
                if r.table is not None:
                    r.table = self._enricher.enrich_table(project_id, r.table, r.inherited)

    async def _look_up(
        self, project_id: str, traces: set[str], sessions: set[str]
    ) -> tuple[dict[str, str], dict[str, SessionContext]]:
        found_traces: dict[str, str] = {}
        found_sessions: dict[str, SessionContext] = {}
        if traces:
            sql, params = lookups.trace_sessions(self._database, project_id, sorted(traces))
            for row in await self._retrying(self._store.query_rows, sql, params):
                found_traces[row["trace_id"]] = row["linked_session"]
        if sessions:
            sql, params = lookups.session_contexts(self._database, project_id, sorted(sessions))
            for row in await self._retrying(self._store.query_rows, sql, params):
                found_sessions[row["session_id"]] = SessionContext(
                    orjson.loads(row["metadata"] or "{}"),
                    orjson.loads(row["user_properties"] or "{}"),
                )
        return found_traces, found_sessions

    # -- exactly-once on redelivery --------------------------------------------------------

    async def _drop_already_stored(self, received: list[_Received]) -> None:
        for r in received:
            # A replayed dead letter is a new message that may be stored already (its
            # first copy failed after the insert, or it was replayed twice): check it too.
            if not r.rows or (r.deliveries <= 1 and not replayed(r.msg)):
                continue
            project_id = r.batch["tenant"]["project_id"]
            version = r.batch["version"]
            r.received_as = r.for_hooks() if r.table is not None else {**r.batch}
            if r.table is not None:
                ids = r.table.column("event_id").to_pylist()
                stored = await self._retrying(self._store.existing_versions, project_id, ids)
                mask = [stored.get(i, -1) < version for i in ids]
                self.stats.duplicates_dropped += mask.count(False)
                r.table = r.table.filter(pa.array(mask, pa.bool_()))
                continue
            ids = [e["event_id"] for e in r.batch["events"]]
            stored = await self._retrying(self._store.existing_versions, project_id, ids)
            keep = [e for e in r.batch["events"] if stored.get(e["event_id"], -1) < version]
            self.stats.duplicates_dropped += len(r.batch["events"]) - len(keep)
            r.batch["events"] = keep

    # -- insert, retry, isolate poison -----------------------------------------------------

    def _table(self, received: list[_Received]) -> pa.Table | None:
        tables = [
            r.table if r.table is not None
            else events_to_arrow(r.batch["tenant"], r.batch["version"], r.batch["events"])
            for r in received
            if r.rows
        ]
        if not tables:
            return None
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    async def _insert(self, received: list[_Received]) -> None:
        try:
            table = self._table(received)
        except Exception as exc:  # a value pyarrow cannot take: isolate the message
            await self._isolate(received, exc)
            return
        if table is not None:
            started = time.monotonic()
            try:
                # One token for every attempt of this insert: a retry after a timeout
                # that hid a commit stores nothing twice (migration 0009).
                token = insert_dedup_token([message_id(r.msg) for r in received], table)
                await self._retrying(self._store.insert_arrow, table, token, keep=received)
            except StoreRejected as exc:
                await self._isolate(received, exc)
                return
            self.stats.inserts += 1
            self.stats.events_written += table.num_rows
            self.stats.last_insert_rows = table.num_rows
            self.stats.last_insert_seconds = time.monotonic() - started
            metrics.observe(metrics.FLUSH_ROWS, table.num_rows)
            metrics.observe(metrics.FLUSH_SECONDS, self.stats.last_insert_seconds)
        # Tasks first (idempotent by id), then the acks: a crash in between redelivers the
        # messages, whose tasks are published again (apiary.dataplane.evaluation.online).
        await online_evaluation.after_write(self._js, self._settings,
                                            [r.for_hooks() for r in received])
        await asyncio.gather(*(self._ack(r.msg) for r in received))

    async def _isolate(self, received: list[_Received], error: Exception) -> None:
        """A batch that cannot be stored: dead-letter its one message, or insert each half
        on its own, so only the offending message is dead-lettered."""
        if len(received) == 1:
            await self._outcomes.dead_letter(received[0].msg, error)
            return
        half = len(received) // 2
        await self._insert(received[:half])
        await self._insert(received[half:])

    async def _retrying(self, call: Any, *args: Any, keep: list[_Received] | None = None) -> Any:
        """Run ``call`` until it succeeds or fails permanently, backing off exponentially."""
        delay = 0.2
        while True:
            try:
                return await call(*args)
            except StoreError as exc:
                if not exc.retryable:
                    raise
                self.stats.insert_retries += 1
                metrics.inc(metrics.RETRIES, stage="writer")
                self.stats.last_error = str(exc)
                log.warning("store unavailable; retrying", extra={"retry_in_s": delay,
                                                                   "error": str(exc)})
            # Keep the flush's messages alive while waiting (the store's owner may be
            # restarting): JetStream must neither redeliver them nor count a delivery.
            held = keep or _HOLDING.get()
            beat = max(self._settings.writer_ack_wait_s / 3, 0.05)
            waited = 0.0
            while True:
                if held:
                    await asyncio.gather(
                        *(r.msg.in_progress() for r in held), return_exceptions=True
                    )
                if waited >= delay:
                    break
                step = min(beat, delay - waited)
                await asyncio.sleep(step)
                waited += step
            delay = min(delay * 2, 30.0)

    async def _ack(self, msg: Msg) -> None:
        """Acknowledge ``msg``; if that fails it is redelivered and recognised as stored."""
        await self._outcomes.ack(msg)
