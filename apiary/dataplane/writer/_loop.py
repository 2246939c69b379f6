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
  the insert. So is a first delivery that may be a redelivery in disguise: a nats-server
  killed (``kill -9``) and restarted can lose its consumer's delivered state and send
  messages again with a delivery count of 1 — those whose stream sequence is at or below
  the highest this writer has received (first deliveries come in stream order), and, after
  the writer's connection reconnected, every one at or below the stream's last sequence
  at the reconnect (a message another writer stored but could not acknowledge).
  Acknowledgements wait for the server's reply (:meth:`Outcomes.ack`), so an ack the server
  answered is not lost with it. Reads collapse versions anyway
  (ReplacingMergeTree), and this keeps the aggregate tables exact too.
- **Transient failures are retried** with exponential back-off while the messages are kept
  alive (``in_progress`` at least every third of ``ack_wait``, in every stage of a flush and
  while a flush waits for its slot), for as long as it takes: no delivery is burned and
  nothing is dead-lettered for it. The chDB owner's death is such a failure
  (:class:`~apiary.errors.StoreUnavailable` until Ray has restarted it). The backlog that
  builds up makes ingestion answer 503 instead of accepting more than can be written.
- **A failed dead letter never stops the writer**: the message stays in the stream, held,
  until its record is durable (:mod:`apiary.queue.outcomes`).
- **Poison is isolated, per message and then per span, in every stage.** When a stage of a
  flush (updates, enrich, relink, backfill, dedup_check, insert) raises anything but a
  transient error (a retryable :class:`~apiary.errors.ApiaryError`, a NATS error, a
  timeout: the flush is then handed back, see :mod:`apiary.queue.outcomes`), the flush is
  run again on each half of its messages, recursively (after a failed insert, the stages
  before it having succeeded, only the insert is run again): the halves that succeed are
  stored and acknowledged as usual, **without being charged a delivery**. A message that fails
  alone (in a flush of one message: twice in a row) is poison; its events are then split
  the same way until the unstorable ones are alone. Its good events are stored; its bad
  ones are dead-lettered in one record ``<stream sequence>-spans.json`` (with their data,
  the error and the stage that failed), and the message is acknowledged once that record is
  durable. A message with nothing storable (or of patches, which are not split) is
  dead-lettered whole and terminated; so is one that does not decode (stage ``decode``).
  Isolation runs only after a failure: the flush without one pays nothing for it.
- **A message that crashes its writer is recognised** (:mod:`._suspects`): a redelivery
  the writer did not ask for is processed alone, in a quarantine flush, after a durable
  attempt count; from ``writer_crash_loop_limit`` crashes on it is dead-lettered with stage
  ``crash_loop``, before ``writer_max_deliver``. Messages that only shared a flush with it
  are stored once and never dead-lettered.
- **Every settled message is in the ingest ledger** (:mod:`._ledger`): recorded (retried
  like any store call, the messages kept alive) before it is acknowledged (``stored``,
  its rows as received) or, after its dead letter is durable, before it is terminated
  (``dead``); a message partly dead-lettered gets both entries.
- Every dead-letter record names its ``stage``, ``project_id`` and ``rows``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any

import nats.errors
import pyarrow as pa
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from apiary._private import metrics
from apiary.dataplane.enrich import Enricher, PriceTable
from apiary.dataplane.evaluation import online as online_evaluation
from apiary.dataplane.writer._backfill import SessionBackfill
from apiary.dataplane.writer._enrichment import FlushEnrichment
from apiary.dataplane.writer._ledger import IngestLedger, LedgerEntry
from apiary.dataplane.writer._received import (
    FlushMessage,
    StageFailed,
    WriterStats,
    header_rows,
    message_id,
    nats_msg_id,
    project_of,
    without_earlier_copies,
)
from apiary.dataplane.writer._relink import TraceRelinker
from apiary.dataplane.writer._suspects import Suspects
from apiary.dataplane.writer._updates import UpdateApplier
from apiary.errors import PoisonMessage, StoreError
from apiary.event import UPDATES_KIND, EventBatch
from apiary.objects import ObjectStore
from apiary.queue import (
    ARROW_ENCODING,
    ENCODING_HEADER,
    EVENTS_STREAM,
    WIRE_SCHEMA,
    WRITERS_CONSUMER,
    TableBatch,
    decode_batch,
    decode_table,
    encode_batch,
    encode_table,
    message_rows,
)
from apiary.queue.dead_letters import replayed
from apiary.queue.heartbeats import Heartbeat
from apiary.queue.outcomes import DeadLetterInfo, DeadPart, Outcomes, deliveries
from apiary.settings import ApiarySettings
from apiary.store import (
    StoreClient,
    events_to_arrow,
    insert_dedup_token,
    track_fields,
    with_attributes,
)

log = logging.getLogger("apiary.writer")

#: The messages of the flush running in this task: a store call retried anywhere in it
#: (look-ups, relinking, back-fill, the redelivery check, the insert) keeps them alive.
_HOLDING: ContextVar[list[FlushMessage] | None] = ContextVar("apiary_writer_holding",
                                                          default=None)


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
        connection: Client | None = None,
    ) -> None:
        """``connection`` (the client ``js`` belongs to): its reconnects are watched, so
        that deliveries after one are checked for events already stored."""
        self._js = js
        self._connection = connection
        # Redeliveries in disguise (module docstring): the highest stream sequence received,
        # and, after a reconnect, the stream's last sequence then (None: not known yet,
        # every delivery is checked until it is).
        self._highest_sequence = 0
        self._recheck_through: int | None = 0
        self._reconnects = connection.stats["reconnects"] if connection is not None else 0
        self._store = store
        self._settings = settings
        self._database = settings.clickhouse_database
        self.name = name
        self._enricher = Enricher(prices or PriceTable.bundled())
        self.stats = WriterStats()
        self._outcomes = Outcomes(stream=EVENTS_STREAM, objects=objects, stats=self.stats,
                                  log=log, what="message",
                                  keep_alive_s=settings.writer_ack_wait_s / 3)
        self._ledger = IngestLedger(store)
        self._suspects = Suspects(js)
        # Fault injection for the fault suite only (settings.fault_exit_on_event_id).
        self._exit_on = settings.fault_exit_on_event_id
        self._stopping = asyncio.Event()
        self._flush_slots = asyncio.Semaphore(2)
        self._flushes: set[asyncio.Task[None]] = set()
        self.updates = UpdateApplier(store=store, enricher=self._enricher, retrying=self._retrying,
                                     dead_letter=self._dead_letter_patches)
        self.enrichment = FlushEnrichment(store=store, enricher=self._enricher,
                                          retrying=self._retrying,
                                          database=self._database)
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
        pending: list[FlushMessage] = []
        suspects: list[FlushMessage] = []
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
                if msgs:
                    await self._watch_reconnects()
                for msg in msgs:
                    received = await self._receive(msg)
                    if received is None:
                        continue
                    if received.deliveries > 1:  # a stale copy still waiting here: drop it
                        pending = without_earlier_copies(pending, received)
                        suspects = without_earlier_copies(suspects, received)
                        rows = sum(r.rows for r in pending)
                    if received.deliveries > 1 and await self._suspected(received):
                        suspects.append(received)
                        continue
                    if not pending:
                        first_at = time.monotonic()
                    pending.append(received)
                    rows += received.rows
                if suspects:  # alone, before anything else (pending ones kept alive)
                    await self._quarantine(suspects, pending)
                    suspects = []
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

    async def _watch_reconnects(self) -> None:
        """After the connection reconnected (the server may have restarted and lost its
        consumer's delivered state), check every first delivery at or below the stream's
        last sequence: one may have been stored by a writer whose ack was lost."""
        if self._connection is None:
            return
        reconnects = self._connection.stats["reconnects"]
        if reconnects != self._reconnects:
            self._reconnects = reconnects
            self.stats.reconnects_seen += 1
            self._recheck_through = None
            log.warning("NATS reconnected; checking deliveries for events already stored")
        if self._recheck_through is None:
            try:
                info = await self._js.stream_info(EVENTS_STREAM)
            except Exception as exc:  # unknown yet: every delivery is checked meanwhile
                self.stats.last_error = f"stream_info: {exc!r}"
                return
            self._recheck_through = int(info.state.last_seq)

    def _possibly_stored(self, msg: Msg, delivered: int) -> bool:
        """Whether ``msg`` may have been stored already (module docstring)."""
        sequence = msg.metadata.sequence.stream
        again = delivered > 1 or sequence <= self._highest_sequence or (
            self._recheck_through is None or sequence <= self._recheck_through)
        self._highest_sequence = max(self._highest_sequence, sequence)
        if again and delivered <= 1:
            self.stats.first_deliveries_checked += 1
        return again

    async def _receive(self, msg: Msg) -> FlushMessage | None:
        self.stats.messages += 1
        delivered = deliveries(msg)
        if delivered > 1:
            self.stats.redelivered_messages += 1
        possibly_stored = self._possibly_stored(msg, delivered)
        try:
            received = self._decode(msg, delivered)
        except PoisonMessage as exc:
            rows = message_rows(msg.headers, None)
            await self._outcomes.dead_letter(
                msg, exc, info=DeadLetterInfo(stage="decode", rows=rows),
                durable=self._ledger_hook(msg, None, dead=rows))
            return None
        received.possibly_stored = possibly_stored
        return received

    @staticmethod
    def _decode(msg: Msg, delivered: int) -> FlushMessage:
        """``msg`` as a flush holds it; :class:`PoisonMessage` if it does not decode."""
        if (msg.headers or {}).get(ENCODING_HEADER) == ARROW_ENCODING:
            rows = decode_table(msg.data)
            envelope: EventBatch = {"schema": WIRE_SCHEMA, "kind": rows.kind,
                                    "tenant": rows.tenant, "version": rows.version,
                                    "events": []}
            counted = header_rows(msg)
            return FlushMessage(msg, envelope, delivered, rows.table, rows.inherited_sessions,
                             received_rows=int(rows.table.num_rows) if counted is None
                             else counted)
        batch = decode_batch(msg.data)
        counted = header_rows(msg)
        if counted is None:
            counted = len(batch.get("events") or []) + len(batch.get("patches") or [])
        return FlushMessage(msg, batch, delivered, received_rows=counted)

    def _fresh(self, r: FlushMessage) -> FlushMessage:
        """``r`` decoded again from its message, as it was received (a re-run of a failed
        stage must not see what the failed run changed in place)."""
        fresh = self._decode(r.msg, r.deliveries)
        fresh.attempts = r.attempts
        fresh.possibly_stored = r.possibly_stored
        return fresh

    async def _start_flush(self, received: list[FlushMessage]) -> None:
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

    async def _flush(self, received: list[FlushMessage]) -> None:
        try:
            await self._flush_now(received)
        finally:
            self._flush_slots.release()

    async def _flush_now(self, received: list[FlushMessage]) -> None:
        _HOLDING.set(received)  # every store retry of this flush keeps these alive
        try:
            # A flush that outlasts a third of ack_wait (slow stages, isolation re-running
            # them) keeps its messages alive: none is redelivered, none charged a delivery.
            async with self._kept_alive(received):
                await self._write(received)
        except Exception as exc:  # a bug in isolation itself: never lose the batch
            log.exception("flush failed; handing the batch back", extra={"error": str(exc)})
            self.stats.last_error = f"flush: {exc!r}"
            await self._hand_back([r for r in received if not r.handed_back],
                                  StageFailed("flush", exc))

    async def _write(self, group: list[FlushMessage], *, failed_before: bool = False) -> None:
        """Store and settle ``group``; if a stage fails, isolate what fails (module
        docstring). ``failed_before``: these messages already failed together once."""
        try:
            await self._run_stages(group)
        except StageFailed as failed:
            if failed.transient:
                log.warning("flush failed; handing the batch back",
                            extra={"error": repr(failed.error), "stage": failed.stage})
                self.stats.last_error = f"{failed.stage}: {failed.error!r}"
                await self._hand_back(group, failed)
                return
            self.stats.isolations += 1
            self.stats.last_error = f"{failed.stage}: {failed.error!r}"
            log.warning("flush failed; isolating the failure",
                        extra={"error": repr(failed.error), "stage": failed.stage,
                               "messages": len(group)})
            if failed.stage == "insert":
                await self._isolate_insert(group, failed)
            else:
                await self._isolate(group, failed, failed_before=failed_before)
            return
        await self._settle(group)

    async def _isolate_insert(self, group: list[FlushMessage], failed: StageFailed) -> None:
        """The insert failed, every stage before it succeeded on ``group`` (as it stands):
        insert each half on its own, recursively; a message alone: find its bad rows."""
        if len(group) == 1:
            await self._isolate_rows(group[0], failed)
            return
        half = len(group) // 2
        for part in (group[:half], group[half:]):
            try:
                await self._insert(part)
            except Exception as exc:
                again = StageFailed("insert", exc)
                if again.transient:
                    await self._hand_back(part, again)
                    continue
                self.stats.isolations += 1
                await self._isolate_insert(part, again)
                continue
            await self._settle(part)

    async def _isolate(self, group: list[FlushMessage], failed: StageFailed, *,
                       failed_before: bool) -> None:
        """Run each half of ``group`` again (every stage, on the messages as received); a
        message alone: run it once more if this was its first failure, else find its bad
        rows."""
        if len(group) > 1:
            half = len(group) // 2
            for part in (group[:half], group[half:]):
                await self._write([self._fresh(r) for r in part], failed_before=True)
        elif not failed_before:  # one message, once: try it again before blaming it
            await self._write([self._fresh(group[0])], failed_before=True)
        else:
            await self._isolate_rows(group[0], failed)

    @contextlib.asynccontextmanager
    async def _kept_alive(self, held: Sequence[FlushMessage]) -> AsyncIterator[None]:
        """``in_progress`` for ``held`` every third of ``ack_wait`` while the block runs."""
        period = max(self._settings.writer_ack_wait_s / 3, 0.05)

        async def beat() -> None:
            while True:
                await asyncio.sleep(period)
                await asyncio.gather(*(r.msg.in_progress() for r in held),
                                     return_exceptions=True)

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run_stages(self, group: list[FlushMessage]) -> None:
        """Every stage of a flush, up to and including the insert; nothing is acknowledged.
        Raises :class:`StageFailed` naming the stage that failed."""
        for r in group:
            # Patches wait for some of these events: continue with them as dicts.
            if r.table is not None and self.updates.awaits_any(
                    r.batch["tenant"]["project_id"], r.table.column("event_id")):
                r.materialize()
        stage = "updates"
        try:
            await self.updates.prepare(group)  # patches (PUT /events): see _updates.py
            stage = "enrich"
            await self.enrichment.enrich(group)
            # Before redelivered events are dropped: a flush handed back mid-move must
            # still find the session its (already stored) root names.
            stage = "relink"
            await self.relinker.settle(group)  # late session names: see _relink.py
            stage = "backfill"
            await self.backfill.settle(group)  # late session events: see _backfill.py
            stage = "dedup_check"
            await self._drop_already_stored(group)
            stage = "insert"
            await self._insert(group)
        except Exception as exc:
            raise StageFailed(stage, exc) from exc

    async def _settle(self, group: list[FlushMessage]) -> None:
        """Record ``group`` as stored in the ledger, queue its online evaluation, ack it."""
        await self._record_settled([self._entry(r.msg, r.batch, "stored", r.received_rows)
                                    for r in group], keep=group)
        # Tasks first (idempotent by id), then the acks: a crash in between redelivers the
        # messages, whose tasks are published again (apiary.dataplane.evaluation.online).
        await online_evaluation.after_write(self._js, self._settings,
                                            [r.for_hooks() for r in group])
        await asyncio.gather(*(self._ack(r.msg) for r in group))

    async def _hand_back(self, received: list[FlushMessage], failed: StageFailed) -> None:
        """Let JetStream redeliver later (with back-off), or dead-letter at the last try
        (:mod:`apiary.queue.outcomes`): the writer's last try is the one before
        ``writer_max_deliver``. The hand-back is recorded first (:mod:`._suspects`), so
        that the redelivery is not taken for one after a crash."""
        last = self._settings.writer_max_deliver - 1
        for r in received:
            r.handed_back = True
            if r.deliveries < last:
                with contextlib.suppress(Exception):  # else: a suspect, tried alone
                    await self._suspects.handed_back(r.msg.metadata.sequence.stream,
                                                     r.deliveries, r.attempts,
                                                     nats_msg_id(r.msg))
            await self._outcomes.hand_back(
                r.msg, r.deliveries, failed.error, last_delivery=last,
                info=DeadLetterInfo(stage=failed.stage, project_id=project_of(r.batch),
                                    rows=r.received_rows),
                durable=self._ledger_hook(r.msg, r.batch, dead=r.received_rows))

    # -- isolating poison ------------------------------------------------------------------

    async def _isolate_rows(self, r: FlushMessage, failed: StageFailed) -> None:
        """``r`` (as the failed run left it) fails alone: store its events that can be
        stored, dead-letter the others (one record), then acknowledge it; or dead-letter it
        whole. After a failed insert the stages before it succeeded on ``r``: its rows as
        they stand are bisected by the insert alone; else ``r`` as received is bisected by
        every stage."""
        processed = failed.stage == "insert"
        if not processed:
            r = self._fresh(r)
        n = r.rows
        if n <= 1 or r.batch.get("kind") == UPDATES_KIND:
            await self._dead_letter_whole(r, failed)
            return
        good: list[FlushMessage] = []
        bad: list[tuple[int, StageFailed]] = []
        try:
            await self._bisect(r, 0, n, failed, good, bad, processed=processed)
        except StageFailed as transient:
            await self._hand_back([r], transient)
            return
        if len(bad) == n:
            await self._dead_letter_whole(r, bad[0][1])
            return
        if not bad:  # every part stored on its own
            stored = sum(g.rows for g in good)
            log.info("message stored in parts", extra={"rows": stored})
            await self._settle_parts(r, good, [], None)
            return
        await self._settle_parts(r, good, [i for i, _ in bad], bad[0][1],
                                 errors=sorted({f"{f.stage}: {f.error}" for _, f in bad}),
                                 processed=processed)

    async def _bisect(self, r: FlushMessage, lo: int, hi: int, failed: StageFailed,
                      good: list[FlushMessage], bad: list[tuple[int, StageFailed]], *,
                      processed: bool) -> None:
        """Rows ``lo:hi`` of ``r`` failed together: store each half on its own (every
        stage, or only the insert if ``processed``), or bisect it further; a row that
        fails alone is bad. Raises a transient failure."""
        if hi - lo == 1:
            bad.append((lo, failed))
            return
        mid = (lo + hi) // 2
        for a, b in ((lo, mid), (mid, hi)):
            part = self._slice(r, a, b, processed=processed)
            try:
                if processed:
                    try:
                        await self._insert([part])
                    except Exception as exc:
                        raise StageFailed("insert", exc) from exc
                else:
                    await self._run_stages([part])
            except StageFailed as again:
                if again.transient:
                    raise
                await self._bisect(r, a, b, again, good, bad, processed=processed)
                continue
            good.append(part)

    def _slice(self, r: FlushMessage, lo: int, hi: int, *, processed: bool) -> FlushMessage:
        """Rows ``lo:hi`` of the message ``r`` holds (as received, or as ``r`` stands if
        ``processed``), as a message of their own (same delivery, same message id: its
        insert's token covers its rows)."""
        whole = FlushMessage(r.msg, {**r.batch}, r.deliveries, r.table, r.inherited,
                          attempts=r.attempts, possibly_stored=r.possibly_stored,
                          ) if processed else self._fresh(r)
        if whole.table is not None:
            whole.table = whole.table.slice(lo, hi - lo)
        else:
            whole.batch["events"] = whole.batch["events"][lo:hi]
        whole.received_rows = hi - lo
        return whole

    def _rows_data(self, r: FlushMessage, rows: list[int], *, processed: bool) -> bytes:
        """The rows ``rows`` of ``r``'s message (as received, or as ``r`` stands if
        ``processed``), encoded as a message."""
        whole = r if processed else self._fresh(r)
        if whole.table is not None:
            return encode_table(TableBatch(
                kind=whole.batch["kind"], tenant=whole.batch["tenant"],
                version=whole.batch["version"], table=whole.table.take(rows),
                inherited_sessions=whole.inherited))
        events = whole.batch["events"]
        return encode_batch({**whole.batch, "events": [events[i] for i in rows]})

    async def _settle_parts(self, r: FlushMessage, good: list[FlushMessage], bad: list[int],
                            failed: StageFailed | None, errors: Sequence[str] = (), *,
                            processed: bool = False) -> None:
        """Settle a message split into parts: ``good`` ones stored, rows ``bad`` to be
        dead-lettered (with ``failed``'s stage) before the message is acknowledged."""
        stored_rows = max(r.received_rows - len(bad), 0) if bad else r.received_rows
        stored = self._entry(r.msg, r.batch, "stored", stored_rows)
        if failed is None:
            await self._record_settled([stored], keep=[r])
            await online_evaluation.after_write(self._js, self._settings,
                                                [g.for_hooks() for g in good])
            await self._ack(r.msg)
            return
        dead = self._entry(r.msg, r.batch, "dead", len(bad))

        async def durable() -> None:
            await self._record_settled([stored, dead], keep=[r])
            await online_evaluation.after_write(self._js, self._settings,
                                                [g.for_hooks() for g in good])

        original = (r.msg.headers or {}).get("Nats-Msg-Id") or str(
            r.msg.metadata.sequence.stream)
        error = PoisonMessage(f"{len(bad)} of {r.rows} events cannot be stored: "
                              + "; ".join(errors)[:2000], stage=failed.stage)
        self.stats.spans_dead_lettered += len(bad)
        r.handed_back = True
        await self._outcomes.dead_letter(
            r.msg, error,
            info=DeadLetterInfo(stage=failed.stage, project_id=project_of(r.batch),
                                rows=len(bad)),
            part=DeadPart(data=self._rows_data(r, bad, processed=processed),
                          msg_id=f"{original}-spans"),
            durable=durable)

    async def _dead_letter_whole(self, r: FlushMessage, failed: StageFailed) -> None:
        r.handed_back = True
        await self._outcomes.dead_letter(
            r.msg, failed.error,
            info=DeadLetterInfo(stage=failed.stage, project_id=project_of(r.batch),
                                rows=r.received_rows),
            durable=self._ledger_hook(r.msg, r.batch, dead=r.received_rows))

    async def _dead_letter_patches(self, msg: Msg, error: Exception) -> None:
        """An ``updates`` message with a patch that cannot be applied (``_updates.py``)."""
        rows = message_rows(msg.headers, msg.data)
        await self._outcomes.dead_letter(
            msg, error, info=DeadLetterInfo(stage="updates", rows=rows),
            durable=self._ledger_hook(msg, None, dead=rows))

    # -- the ledger ------------------------------------------------------------------------

    @staticmethod
    def _entry(msg: Msg, batch: EventBatch | None, outcome: Any, rows: int) -> LedgerEntry:
        tokens = msg.subject.split(".", 2)  # events.<kind>.<project>
        project = project_of(batch) if batch is not None else (
            tokens[2] if len(tokens) == 3 else "")
        kind = batch["kind"] if batch is not None else (tokens[1] if len(tokens) > 1 else "")
        return LedgerEntry(project_id=project, stream_sequence=msg.metadata.sequence.stream,
                           kind=kind, outcome=outcome, rows=rows)

    async def _record_settled(self, entries: list[LedgerEntry], *,
                              keep: list[FlushMessage] | None = None) -> None:
        """Record ``entries`` in the ingest ledger, retried while the store is away (the
        messages kept alive meanwhile)."""
        await self._retrying(self._ledger.settled, entries, keep=keep)

    def _ledger_hook(self, msg: Msg, batch: EventBatch | None, *,
                     dead: int) -> Callable[[], Awaitable[None]]:
        """What :meth:`Outcomes.dead_letter` awaits once ``msg``'s record is durable."""
        entry = self._entry(msg, batch, "dead", dead)

        async def durable() -> None:
            await self._record_settled([entry])

        return durable

    # -- crash-looping messages ------------------------------------------------------------

    async def _suspected(self, r: FlushMessage) -> bool:
        """Whether ``r`` (a redelivery) follows a delivery that ended without an outcome."""
        try:
            suspicion = await self._suspects.check(r.msg.metadata.sequence.stream,
                                                   r.deliveries, nats_msg_id(r.msg))
        except Exception as exc:  # unknown: safest alone
            log.warning("suspects bucket unreadable", extra={"error": repr(exc)})
            return True
        r.attempts = suspicion.attempts
        return suspicion.suspect

    async def _quarantine(self, suspects: list[FlushMessage], pending: list[FlushMessage]) -> None:
        """Process ``suspects`` one message at a time, with no other flush running: a
        crash now is that message's alone (:mod:`._suspects`). ``pending`` (waiting for
        the next flush) and the suspects not yet processed are kept alive meanwhile."""
        held = 0
        try:
            async with self._kept_alive([*suspects, *pending]):
                for _ in range(2):  # every flush slot: the running flushes end first
                    await self._flush_slots.acquire()
                    held += 1
                for r in suspects:
                    await self._quarantined(r)
        finally:
            for _ in range(held):
                self._flush_slots.release()

    async def _quarantined(self, r: FlushMessage) -> None:
        sequence = r.msg.metadata.sequence.stream
        self.stats.suspects += 1
        crashes = r.attempts + 1  # the quarantine flushes that never ended, and the first
        last = self._settings.writer_max_deliver - 1
        if crashes >= self._settings.writer_crash_loop_limit or (
                r.attempts and r.deliveries >= last):
            self.stats.crash_loops += 1
            error = PoisonMessage(f"the message crashed its writer {crashes} times",
                                  deliveries=r.deliveries)
            await self._dead_letter_whole(r, StageFailed("crash_loop", error))
            await self._suspects.settled(sequence)
            return
        try:
            await self._suspects.attempting(sequence, r.attempts + 1, nats_msg_id(r.msg))
        except Exception as exc:  # no durable count: do not risk another crash uncounted
            log.warning("suspect not recorded; handing it back", extra={"error": repr(exc)})
            await self._hand_back([r], StageFailed("crash_loop", exc))
            return
        r.attempts += 1
        log.warning("processing a suspect alone", extra={"stream_sequence": sequence,
                                                         "attempt": r.attempts})
        await self._flush_now([r])
        if not r.handed_back:
            await self._suspects.settled(sequence)

    # -- exactly-once on redelivery --------------------------------------------------------

    async def _drop_already_stored(self, received: list[FlushMessage]) -> None:
        """Drop the events of possibly stored messages (redeliveries, replays) that are
        stored at their message's version or later: one look-up per project."""
        # A replayed dead letter is a new message that may be stored already (its first
        # copy failed after the insert, or it was replayed twice): check it too.
        checked = [r for r in received if r.rows and (r.possibly_stored or replayed(r.msg))]
        by_project: dict[str, list[FlushMessage]] = {}
        for r in checked:
            by_project.setdefault(project_of(r.batch), []).append(r)
        for project_id, group in by_project.items():
            ids = sorted({i for r in group for i in (
                r.table.column("event_id").to_pylist() if r.table is not None
                else [e["event_id"] for e in r.batch["events"]])})
            stored = await self._retrying(self._store.existing_versions, project_id, ids)
            for r in group:
                version = r.batch["version"]
                r.received_as = r.for_hooks() if r.table is not None else {**r.batch}
                if r.table is not None:
                    mask = [stored.get(i, -1) < version
                            for i in r.table.column("event_id").to_pylist()]
                    self.stats.duplicates_dropped += mask.count(False)
                    r.table = r.table.filter(pa.array(mask, pa.bool_()))
                    continue
                keep = [e for e in r.batch["events"]
                        if stored.get(e["event_id"], -1) < version]
                self.stats.duplicates_dropped += len(r.batch["events"]) - len(keep)
                r.batch["events"] = keep

    # -- insert, retry, isolate poison -----------------------------------------------------

    def _table(self, received: list[FlushMessage]) -> pa.Table | None:
        tables = [
            r.table if r.table is not None
            else events_to_arrow(r.batch["tenant"], r.batch["version"], r.batch["events"])
            for r in received
            if r.rows
        ]
        if not tables:
            return None
        if len(tables) == 1:
            return tables[0]
        # A message encoded before migration 0011 (still in the stream across an upgrade)
        # lacks the attribute arrays: give it them, so that all tables share one schema.
        return pa.concat_tables([with_attributes(t) for t in tables])

    async def _insert(self, received: list[FlushMessage]) -> None:
        """Insert the flush's rows (one token for every attempt); raises what the Arrow
        conversion or the store rejects (the flush isolates it)."""
        table = self._table(received)
        if table is None:
            return
        if self._exit_on is not None:
            self._fault_exit(table)
        started = time.monotonic()
        # One token for every attempt of this insert: a retry after a timeout that hid a
        # commit stores nothing twice (migration 0009).
        token = insert_dedup_token([message_id(r.msg) for r in received], table)
        # The flush's schema and detail tracking rows, derived here once for every attempt
        # (apiary.store.track_fields: ClickHouse no longer walks the JSON, migration 0013).
        tracked_at = time.perf_counter()
        tracking = track_fields(table)
        self.stats.tracking_seconds += time.perf_counter() - tracked_at
        await self._retrying(self._store.insert_arrow, table, token, tracking, keep=received)
        self.stats.inserts += 1
        self.stats.events_written += table.num_rows
        self.stats.last_insert_rows = table.num_rows
        self.stats.last_insert_seconds = time.monotonic() - started
        metrics.observe(metrics.FLUSH_ROWS, table.num_rows)
        metrics.observe(metrics.FLUSH_SECONDS, self.stats.last_insert_seconds)

    def _fault_exit(self, table: pa.Table) -> None:
        """``fault_exit_on_event_id`` (the fault suite only): end the process at once, as
        an out-of-memory kill would, when the insert holds that event."""
        if self._exit_on in table.column("event_id").to_pylist():
            log.error("fault injection: writer process exiting", extra={
                "event_id": self._exit_on})
            os._exit(137)

    async def _retrying(self, call: Any, *args: Any, keep: list[FlushMessage] | None = None) -> Any:
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
