"""The writer's flush path: what happens to the messages of one flush, from the stages
to the acknowledgement.

:class:`Flusher` runs every stage of a flush (updates, enrich, relink, backfill,
dedup_check, insert), then settles its messages: recorded in the ingest ledger, handed to
online evaluation, acknowledged. A transient failure hands the flush back; any other
failure is isolated, per message and then per span, and what cannot be stored is
dead-lettered. The guarantees it keeps (nothing acknowledged before it is stored, nothing
stored twice, transient failures retried with the messages kept alive, poison isolated)
are stated in :mod:`apiary.dataplane.writer._loop`, whose :class:`WriterLoop` receives
the messages, schedules the flushes and quarantines suspects.
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

import pyarrow as pa
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from apiary._private import metrics
from apiary.dataplane.enrich import Enricher
from apiary.dataplane.evaluation import online as online_evaluation
from apiary.dataplane.writer._backfill import SessionBackfill
from apiary.dataplane.writer._enrichment import FlushEnrichment
from apiary.dataplane.writer._ledger import IngestLedger, LedgerEntry
from apiary.dataplane.writer._received import (
    FlushMessage,
    StageFailed,
    WriterStats,
    fresh,
    message_id,
    nats_msg_id,
    project_of,
)
from apiary.dataplane.writer._relink import TraceRelinker
from apiary.dataplane.writer._suspects import Suspects
from apiary.dataplane.writer._updates import UpdateApplier
from apiary.errors import PoisonMessage, StoreError
from apiary.event import UPDATES_KIND, EventBatch
from apiary.queue import TableBatch, encode_batch, encode_table, message_rows
from apiary.queue.dead_letters import replayed
from apiary.queue.outcomes import DeadLetterInfo, DeadPart, Outcomes
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


@contextlib.asynccontextmanager
async def kept_alive(held: Sequence[FlushMessage], period: float) -> AsyncIterator[None]:
    """``in_progress`` for ``held`` every ``period`` seconds while the block runs."""

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


class Flusher:
    """One writer's flush path: stores and settles the flushes :class:`WriterLoop` hands it
    (:meth:`flush`), and hands back or dead-letters what it is given."""

    def __init__(
        self,
        *,
        js: JetStreamContext,
        store: StoreClient,
        settings: ApiarySettings,
        enricher: Enricher,
        stats: WriterStats,
        outcomes: Outcomes,
        suspects: Suspects,
        ack: Callable[[Msg], Awaitable[None]],
    ) -> None:
        """``ack``: acknowledges one stored message (the loop's, so that what it does on
        an ack is what happens here)."""
        self._js = js
        self._store = store
        self._settings = settings
        self.stats = stats
        self._outcomes = outcomes
        self._suspects = suspects
        self._ack = ack
        self._ledger = IngestLedger(store)
        #: ``in_progress`` for held messages every third of ``ack_wait``.
        self._keep_alive_s = max(settings.writer_ack_wait_s / 3, 0.05)
        #: Stream sequence -> the running flushes holding it (each flush's "ended" event).
        self._in_flight: dict[int, list[asyncio.Event]] = {}
        # Fault injection for the fault suite only (settings.fault_exit_on_event_id).
        self._exit_on = settings.fault_exit_on_event_id
        self.updates = UpdateApplier(store=store, enricher=enricher, retrying=self._retrying,
                                     dead_letter=self._dead_letter_patches)
        self.enrichment = FlushEnrichment(store=store, enricher=enricher,
                                          retrying=self._retrying,
                                          database=settings.clickhouse_database)
        self.relinker = TraceRelinker(store=store, enricher=enricher,
                                      retrying=self._retrying)
        self.backfill = SessionBackfill(store=store, enricher=enricher,
                                        retrying=self._retrying)

    async def flush(self, received: list[FlushMessage]) -> None:
        """Store and settle ``received``, isolating what fails; raises nothing (a failure of
        the isolation itself hands the messages not yet settled back).

        A possibly stored message whose stream sequence an earlier flush of this writer
        still holds (the server, restarted, delivered it again while that flush ran) waits
        for that flush to end before its redelivery check: checked while the other insert
        is still to come, both would store its events.
        """
        _HOLDING.set(received)  # every store retry of this flush keeps these alive
        sequences = [r.msg.metadata.sequence.stream for r in received]
        earlier = {ended for r, sequence in zip(received, sequences, strict=True)
                   if r.possibly_stored for ended in self._in_flight.get(sequence, ())}
        done = asyncio.Event()
        for sequence in sequences:
            self._in_flight.setdefault(sequence, []).append(done)
        try:
            # A flush that outlasts a third of ack_wait (slow stages, isolation re-running
            # them) keeps its messages alive: none is redelivered, none charged a delivery.
            async with kept_alive(received, self._keep_alive_s):
                if earlier:
                    self.stats.flushes_waited += 1
                    await asyncio.gather(*(ended.wait() for ended in earlier))
                await self._write(received)
        except Exception as exc:  # a bug in isolation itself: never lose the batch
            log.exception("flush failed; handing the batch back", extra={"error": str(exc)})
            self.stats.last_error = f"flush: {exc!r}"
            await self.hand_back([r for r in received if not r.handed_back],
                                 StageFailed("flush", exc))
        finally:
            done.set()
            for sequence in sequences:
                holders = self._in_flight[sequence]
                holders.remove(done)
                if not holders:
                    del self._in_flight[sequence]

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
                await self.hand_back(group, failed)
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
                    await self.hand_back(part, again)
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
                await self._write([fresh(r) for r in part], failed_before=True)
        elif not failed_before:  # one message, once: try it again before blaming it
            await self._write([fresh(group[0])], failed_before=True)
        else:
            await self._isolate_rows(group[0], failed)
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

    async def hand_back(self, received: list[FlushMessage], failed: StageFailed) -> None:
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
            r = fresh(r)
        n = r.rows
        if n <= 1 or r.batch.get("kind") == UPDATES_KIND:
            await self.dead_letter_whole(r, failed)
            return
        good: list[FlushMessage] = []
        bad: list[tuple[int, StageFailed]] = []
        try:
            await self._bisect(r, 0, n, failed, good, bad, processed=processed)
        except StageFailed as transient:
            await self.hand_back([r], transient)
            return
        if len(bad) == n:
            await self.dead_letter_whole(r, bad[0][1])
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
                          ) if processed else fresh(r)
        if whole.table is not None:
            whole.table = whole.table.slice(lo, hi - lo)
        else:
            whole.batch["events"] = whole.batch["events"][lo:hi]
        whole.received_rows = hi - lo
        return whole

    def _rows_data(self, r: FlushMessage, rows: list[int], *, processed: bool) -> bytes:
        """The rows ``rows`` of ``r``'s message (as received, or as ``r`` stands if
        ``processed``), encoded as a message."""
        whole = r if processed else fresh(r)
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

    async def dead_letter_whole(self, r: FlushMessage, failed: StageFailed) -> None:
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

    async def dead_letter_undecodable(self, msg: Msg, error: PoisonMessage) -> None:
        """A message that does not decode: dead-lettered whole, stage ``decode``."""
        rows = message_rows(msg.headers, None)
        await self._outcomes.dead_letter(
            msg, error, info=DeadLetterInfo(stage="decode", rows=rows),
            durable=self._ledger_hook(msg, None, dead=rows))


__all__ = ["Flusher", "kept_alive"]
