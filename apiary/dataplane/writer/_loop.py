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
  at the reconnect (a message another writer stored but could not acknowledge). One
  delivered again while this writer's earlier flush of it still runs waits for that flush
  to end before it is checked (:meth:`Flusher.flush`).
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
import time

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from apiary.dataplane.enrich import Enricher, PriceTable
from apiary.dataplane.writer._flush import Flusher, kept_alive
from apiary.dataplane.writer._received import (
    FlushMessage,
    StageFailed,
    WriterStats,
    decode,
    nats_msg_id,
    without_earlier_copies,
)
from apiary.dataplane.writer._suspects import Suspects
from apiary.errors import PoisonMessage
from apiary.objects import ObjectStore
from apiary.queue import EVENTS_STREAM, WRITERS_CONSUMER
from apiary.queue.heartbeats import Heartbeat
from apiary.queue.outcomes import Outcomes, deliveries
from apiary.settings import ApiarySettings
from apiary.store import StoreClient

log = logging.getLogger("apiary.writer")


class WriterLoop:
    """One writer's consume → enrich → insert → ack loop over the ``writers`` consumer: it
    receives the messages, schedules the flushes (two at a time) and quarantines suspects;
    :class:`~apiary.dataplane.writer._flush.Flusher` stores and settles each flush."""

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
        self._settings = settings
        self.name = name
        self.stats = WriterStats()
        self._outcomes = Outcomes(stream=EVENTS_STREAM, objects=objects, stats=self.stats,
                                  log=log, what="message",
                                  keep_alive_s=settings.writer_ack_wait_s / 3)
        self._suspects = Suspects(js)
        self._stopping = asyncio.Event()
        #: ``in_progress`` for held messages every third of ``ack_wait``.
        self._keep_alive_s = max(settings.writer_ack_wait_s / 3, 0.05)
        self._flush_slots = asyncio.Semaphore(2)
        self._flushes: set[asyncio.Task[None]] = set()
        self._flusher = Flusher(js=js, store=store, settings=settings,
                                enricher=Enricher(prices or PriceTable.bundled()),
                                stats=self.stats, outcomes=self._outcomes,
                                suspects=self._suspects, ack=self._ack)
        # The flush's stages (the flusher runs them; tests read their stats).
        self.updates = self._flusher.updates
        self.enrichment = self._flusher.enrichment
        self.relinker = self._flusher.relinker
        self.backfill = self._flusher.backfill


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
            received = decode(msg, delivered)
        except PoisonMessage as exc:
            await self._flusher.dead_letter_undecodable(msg, exc)
            return None
        received.possibly_stored = possibly_stored
        return received

    # -- scheduling flushes ----------------------------------------------------------------

    async def _start_flush(self, received: list[FlushMessage]) -> None:
        # Both slots may be held by flushes waiting for the store (its owner restarting):
        # keep these messages alive meanwhile, so that JetStream does not hand them to
        # another writer while they wait here.
        while True:
            try:
                await asyncio.wait_for(self._flush_slots.acquire(), timeout=self._keep_alive_s)
                break
            except TimeoutError:
                await asyncio.gather(*(r.msg.in_progress() for r in received),
                                     return_exceptions=True)
        task = asyncio.create_task(self._flush(received))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, received: list[FlushMessage]) -> None:
        try:
            await self._flusher.flush(received)
        finally:
            self._flush_slots.release()

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
            async with kept_alive([*suspects, *pending], self._keep_alive_s):
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
            await self._flusher.dead_letter_whole(r, StageFailed("crash_loop", error))
            await self._suspects.settled(sequence)
            return
        try:
            await self._suspects.attempting(sequence, r.attempts + 1, nats_msg_id(r.msg))
        except Exception as exc:  # no durable count: do not risk another crash uncounted
            log.warning("suspect not recorded; handing it back", extra={"error": repr(exc)})
            await self._flusher.hand_back([r], StageFailed("crash_loop", exc))
            return
        r.attempts += 1
        log.warning("processing a suspect alone", extra={"stream_sequence": sequence,
                                                         "attempt": r.attempts})
        await self._flusher.flush([r])
        if not r.handed_back:
            await self._suspects.settled(sequence)

    async def _ack(self, msg: Msg) -> None:
        """Acknowledge ``msg``; if that fails it is redelivered and recognised as stored."""
        await self._outcomes.ack(msg)
