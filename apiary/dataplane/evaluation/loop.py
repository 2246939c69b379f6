"""The evaluator's loop: pull tasks, score them, publish each score as a patch, acknowledge.

Each evaluator runs one :class:`EvaluatorLoop` on the shared durable pull consumer
``evaluation/evaluators`` (explicit acks, ``max_deliver`` deliveries); JetStream spreads
tasks over the pool, so adding evaluators adds throughput without coordination.

For one task, in this order (what is durable when):

1. the scored-task ledger is asked whether the task already produced its score; if so,
   the task is acknowledged and nothing else happens;
2. the metric runs (sandbox or judge); a task held longer than a third of ``ack_wait``
   is kept alive with ``in_progress``;
3. the score is published to the ``events`` stream as a patch of the event (an ``updates``
   batch, ``Nats-Msg-Id`` from the task id): once JetStream acknowledged it, the score is
   durable and the writers will store and merge it like any update;
4. the task id is recorded in the ledger;
5. the task is acknowledged.

A crash anywhere before 5 makes JetStream redeliver the task; the redelivery either finds
the ledger entry (after 4) or scores again and publishes the same patch id, which
JetStream drops (after 3). So at-least-once delivery yields exactly one score per task
(see :mod:`apiary.dataplane.evaluation.tasks` for why a task is one (event, metric version)).

Failures: the sandbox or judge being unavailable, the queue refusing the score, or an
unexpected error hand the task back (``nak`` with back-off) until its last delivery, when
it is dead-lettered (object store, with the error) and terminated. A metric that fails on
the event (raises, times out, no verdict) is counted and logged and its task acknowledged:
the same code on the same event would fail again. Undecodable tasks are dead-lettered.

Fairness and failing metrics: an evaluator takes up to ``APIARY_EVALUATOR_MAX_HELD_TASKS``
tasks and keeps them alive (``in_progress``) while they wait; ``APIARY_EVALUATOR_CONCURRENCY``
of them run, at most ``APIARY_EVALUATOR_METRIC_CONCURRENCY`` per (project, metric), the
waiting metrics served in turn (:mod:`apiary.dataplane.evaluation.fairness`), and the
sandbox grows while jobs wait for a worker: a metric's backlog delays another metric's task
by at most one evaluation per metric ahead of it. A metric that fails
``APIARY_EVALUATOR_BREAKER_FAILURES`` times in a row is paused for its project; its tasks
are then acknowledged as skipped until it is resumed
(:mod:`apiary.dataplane.evaluation.breakers`). At stop, tasks still waiting for their turn
are handed back (``nak``, redelivered at once to another evaluator).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError

from apiary._private import metrics
from apiary.dataplane.evaluation.breakers import BreakerStore, MetricBreakers
from apiary.dataplane.evaluation.fairness import FairTurns, TurnsClosed
from apiary.dataplane.evaluation.ledger import ScoredLedger
from apiary.dataplane.evaluation.metrics import AUTO_KINDS
from apiary.dataplane.evaluation.scoring import Scorer
from apiary.dataplane.evaluation.tasks import (
    EvaluationTask,
    decode_task,
    score_batch,
    score_msg_id,
    score_patch,
    score_subject,
)
from apiary.errors import (
    ApiaryError,
    JudgeError,
    NotFound,
    PipelineBackpressure,
    PoisonMessage,
    QueueError,
    SandboxError,
)
from apiary.objects import ObjectStore
from apiary.queue import EVALUATION_STREAM, EVALUATORS_CONSUMER, EVENTS_STREAM, encode_batch
from apiary.queue.outcomes import Outcomes, deliveries
from apiary.settings import ApiarySettings
from apiary.store import StoreClient

log = logging.getLogger("apiary.evaluator")

_STREAM_FULL_CODES = frozenset({10077, 10047, 10028})
#: Longest a fetch waits for tasks; also how long a stop may wait for the fetch to end.
FETCH_WAIT_S = 1.0


@dataclass
class EvaluatorStats:
    """Counters of one evaluator since it started."""

    received: int = 0
    redelivered: int = 0
    evaluations: int = 0  # metric runs, whatever their outcome
    scored: int = 0  # score patches JetStream stored
    duplicate_scores: int = 0  # score patches JetStream already had (a redelivered task)
    already_scored: int = 0  # tasks skipped because the ledger had them
    no_score: int = 0  # the metric returned nothing to record
    failed: int = 0  # the metric failed on the event
    skipped_paused: int = 0  # tasks of a metric paused by its circuit breaker, acknowledged
    breakers_tripped: int = 0  # metrics this evaluator paused
    handed_back: int = 0
    dead_lettered: int = 0
    dead_letter_failures: int = 0  # dead-letter writes that failed (each retried)
    dead_letters_pending: int = 0  # tasks held until their dead letter is durable
    loop_restarts: int = 0  # times the loop ended with an exception and was started again
    in_flight: int = 0
    last_error: str = ""
    started_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Retry(Exception):
    """Hand the task back to JetStream (with the underlying error)."""


class EvaluatorLoop:
    """One evaluator's fetch → score → publish → record → ack loop."""

    def __init__(self, *, js: JetStreamContext, scorer: Scorer, objects: ObjectStore,
                 settings: ApiarySettings, name: str,
                 store: Callable[[], StoreClient] | None = None) -> None:
        self._js = js
        self._scorer = scorer
        self._settings = settings
        self._store_factory = store
        self._store: StoreClient | None = None
        self.name = name
        self.stats = EvaluatorStats()
        self._outcomes = Outcomes(stream=EVALUATION_STREAM, objects=objects, stats=self.stats,
                                  log=log, what="evaluation task",
                                  keep_alive_s=settings.writer_ack_wait_s / 3)
        self._stopping = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        # Messages being handled (by id: Msg is not hashable), and since their last beat.
        self._working: dict[int, tuple[Msg, float]] = {}
        self._ledger: ScoredLedger | None = None
        self._ack_wait = settings.writer_ack_wait_s
        self._max_deliver = settings.writer_max_deliver
        self._concurrency = settings.evaluator_concurrency
        # Fairness (apiary.dataplane.evaluation.fairness): concurrency tasks run, per
        # (project, Python metric) at most evaluator_metric_concurrency, the waiting
        # metrics served in turn; up to max_held tasks are taken (and kept alive) while
        # slots are free that only a capped metric's tasks wait for.
        self._max_held = max(settings.evaluator_max_held_tasks, self._concurrency)
        self._turns = FairTurns(total=self._concurrency,
                                per_key=settings.evaluator_metric_concurrency)
        self._breakers: MetricBreakers | None = None

    def stop(self) -> None:
        """Finish: stop fetching, complete (and acknowledge) the tasks running, hand back
        (``nak``) those still waiting for their turn, return."""
        self._stopping.set()

    async def run(self) -> None:
        sub = await self._js.pull_subscribe_bind(EVALUATORS_CONSUMER, EVALUATION_STREAM)
        self._ledger = await ScoredLedger.open(self._js, self._settings)
        self._breakers = MetricBreakers(
            await BreakerStore.open(self._js, self._settings),
            threshold=self._settings.evaluator_breaker_failures,
            ttl_s=self._settings.evaluator_breaker_ttl_s)
        info = await self._js.consumer_info(EVALUATION_STREAM, EVALUATORS_CONSUMER)
        self._ack_wait = float(info.config.ack_wait or self._ack_wait)
        self._max_deliver = int(info.config.max_deliver or self._max_deliver)
        heartbeats = asyncio.create_task(self._heartbeats())
        try:
            while not self._stopping.is_set():
                # Fetch while a slot is free that no task in hand can take (those waiting
                # are held back by their metric's cap), up to max_held tasks in hand: a
                # capped metric's backlog never hides the next metric's task, and an
                # evaluator never hoards tasks it could not start (the pool shares them).
                held = len(self._inflight)
                starting = held - self._turns.running - self._turns.waiting
                free = min(self._concurrency - self._turns.running - starting,
                           self._max_held - held)
                if free <= 0:
                    await asyncio.wait(self._inflight, timeout=FETCH_WAIT_S,
                                       return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    msgs = await sub.fetch(batch=min(free, 256), timeout=FETCH_WAIT_S)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                except nats.errors.Error as exc:
                    self.stats.last_error = f"fetch: {exc}"
                    await asyncio.sleep(0.5)
                    continue
                for msg in msgs:
                    task = asyncio.create_task(self._handle(msg))
                    self._inflight.add(task)
                    task.add_done_callback(self._done)
                self.stats.in_flight = len(self._inflight)
                await asyncio.sleep(0)  # let them take (or queue for) their turns first
        finally:
            self._turns.close()  # tasks still waiting for a turn go back to the queue
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)
            heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeats
            self.stats.in_flight = 0
            if self._stopping.is_set():  # a restart after a crash keeps retrying them
                await self._outcomes.close()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self.stats.in_flight = len(self._inflight)

    # -- one task ---------------------------------------------------------------------------

    async def _handle(self, msg: Msg) -> None:
        self.stats.received += 1
        delivered = deliveries(msg)
        if delivered > 1:
            self.stats.redelivered += 1
        try:
            task = decode_task(msg.data)
        except PoisonMessage as exc:
            try:
                await self._outcomes.dead_letter(msg, exc)
            except Exception as store_error:  # comes back after ack_wait; try again then
                log.warning("dead-lettering failed", extra={"error": repr(store_error)})
            return
        self._working[id(msg)] = (msg, time.monotonic())
        try:
            key = (task["tenant"]["project_id"], task["metric"]["id"])
            # Python metrics hold a sandbox worker: capped per metric. Judges mostly wait
            # on their endpoint: they may use every slot (a freed one still goes to the
            # next metric in turn).
            limit = None if task["metric"]["kind"] == "python" else self._concurrency
            async with self._turns.turn(key, limit):
                await self._process(msg, task)
        except TurnsClosed:  # stopping before its turn: another evaluator takes it now
            with contextlib.suppress(Exception):
                await msg.nak()
        except _Retry as exc:
            await self._hand_back(msg, delivered, exc.__cause__ or exc)
        except Exception as exc:  # a bug: never lose the task, never spin on it either
            log.exception("evaluation failed unexpectedly", extra={"task_id": task["task_id"]})
            await self._hand_back(msg, delivered, exc)
        finally:
            self._working.pop(id(msg), None)

    async def _process(self, msg: Msg, task: EvaluationTask) -> None:
        assert self._ledger is not None
        task_id = task["task_id"]
        try:
            if await self._ledger.scored(task_id):
                self.stats.already_scored += 1
                metrics.inc(metrics.EVALUATIONS, outcome="already_scored")
                await self._finish(msg, task)
                return
        except nats.errors.Error as exc:
            raise _Retry from exc
        if task["metric"]["kind"] not in AUTO_KINDS:  # human metrics: reviewers score them
            self.stats.failed += 1
            metrics.inc(metrics.EVALUATIONS, outcome="failed")
            await self._finish(msg, task)
            return
        project_id, metric_id = task["tenant"]["project_id"], task["metric"]["id"]
        if self._breakers is not None and await self._breakers.paused(project_id, metric_id):
            # Paused by its circuit breaker (apiary.dataplane.evaluation.breakers): skipped,
            # counted, acknowledged; never retried.
            self.stats.skipped_paused += 1
            metrics.inc(metrics.EVALUATIONS, outcome="skipped_paused")
            await self._breakers.skipped(project_id, metric_id)
            await self._finish(msg, task)
            return
        event = await self._event(task)
        if event is None:
            await self._finish(msg, task)
            return
        self.stats.evaluations += 1
        try:
            result = await self._scorer.score(task["metric"], event, task["tenant"])
        except (SandboxError, JudgeError) as exc:
            if exc.retryable:
                raise _Retry from exc
            self.stats.failed += 1
            metrics.inc(metrics.EVALUATIONS, outcome="failed")
            self.stats.last_error = f"metric failed: {exc}"
            log.info("metric failed on an event", extra={
                "task_id": task_id, "event_id": task["event_id"],
                "metric_id": task["metric"]["id"], "error": str(exc)})
            if self._breakers is not None and await self._breakers.failed(
                    project_id, metric_id, f"{type(exc).__name__}: {exc}"):
                self.stats.breakers_tripped += 1
            await self._finish(msg, task)
            return
        if self._breakers is not None:
            self._breakers.succeeded(project_id, metric_id)
        patch = score_patch(task, result)
        if patch is None:
            self.stats.no_score += 1
            metrics.inc(metrics.EVALUATIONS, outcome="no_score")
        else:
            await self._publish_score(task, patch)
        try:
            await self._ledger.record(task_id, task["created_ns"])
        except nats.errors.Error as exc:
            raise _Retry from exc
        await self._finish(msg, task)

    async def _event(self, task: EvaluationTask) -> dict[str, Any] | None:
        """The event to score (as the task carries it, else the newest stored version)."""
        event = task.get("event")
        if event is None:
            if self._store is None:
                if self._store_factory is None:
                    raise _Retry from ApiaryError("no event store to read the event from")
                self._store = self._store_factory()
            try:
                event = await self._store.get_event(task["tenant"]["project_id"],
                                                    task["event_id"])
            except NotFound:
                self.stats.failed += 1
                metrics.inc(metrics.EVALUATIONS, outcome="failed")
                self.stats.last_error = f"event {task['event_id']} not found"
                log.warning("event to score not found", extra={"task_id": task["task_id"]})
                return None
            except ApiaryError as exc:
                if exc.retryable:
                    raise _Retry from exc
                raise
        scored = dict(event)
        scored.setdefault("project_id", task["tenant"]["project_id"])
        return scored

    async def _publish_score(self, task: EvaluationTask, patch: Any) -> None:
        try:
            ack = await self._js.publish(
                score_subject(task), encode_batch(score_batch(task, patch)), timeout=10.0,
                stream=EVENTS_STREAM, headers={"Nats-Msg-Id": score_msg_id(task)})
        except APIError as exc:
            if exc.err_code in _STREAM_FULL_CODES or "maximum" in (exc.description or ""):
                raise _Retry from PipelineBackpressure("the events queue is full")
            raise _Retry from QueueError(f"JetStream refused a score: {exc.description}")
        except (TimeoutError, nats.errors.Error) as exc:
            raise _Retry from QueueError(f"JetStream unreachable: {exc!r}")
        if ack.duplicate:
            self.stats.duplicate_scores += 1
            metrics.inc(metrics.EVALUATIONS, outcome="duplicate_score")
        else:
            self.stats.scored += 1
            metrics.inc(metrics.EVALUATIONS, outcome="scored")

    async def _finish(self, msg: Msg, task: EvaluationTask) -> None:
        """Acknowledge the task: everything it asked for is durable now (a failed ack: it is
        redelivered and recognised by the ledger)."""
        await self._outcomes.ack(msg)

    # -- failure paths ------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        """Tell JetStream the tasks held longer than a third of ``ack_wait`` are being worked
        on: a slow judge must not make it redeliver a task to another evaluator. (One loop
        for all tasks: a timer per task would cost more than most evaluations.)"""
        period = max(self._ack_wait / 3.0, 0.2)
        while True:
            await asyncio.sleep(period / 2)
            due = time.monotonic() - period
            for key, (msg, since) in list(self._working.items()):
                if since <= due and key in self._working:
                    self._working[key] = (msg, time.monotonic())
                    with contextlib.suppress(Exception):
                        await msg.in_progress()

    async def _hand_back(self, msg: Msg, deliveries: int, error: BaseException) -> None:
        """Nak with back-off, or dead-letter at the consumer's last delivery
        (:mod:`apiary.queue.outcomes`)."""
        self.stats.last_error = str(error)
        if await self._outcomes.hand_back(msg, deliveries, error,
                                          last_delivery=self._max_deliver):
            self.stats.handed_back += 1
            metrics.inc(metrics.EVALUATIONS, outcome="handed_back")


__all__ = ["EvaluatorLoop", "EvaluatorStats"]
