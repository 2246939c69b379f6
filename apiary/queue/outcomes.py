"""How a JetStream consumer ends a delivery: acknowledge it, hand it back with back-off, or
dead-letter it.

Both data-plane consumers use this, each over its own stream and with its own counters: the
writer (:mod:`apiary.dataplane.writer`, stream ``events``) and the evaluator
(:mod:`apiary.dataplane.evaluation.loop`, stream ``evaluation``). Their durable pull consumers
take explicit acks and deliver a message at most ``max_deliver`` times (docs/architecture.md,
"The data path" and "Evaluation"). Guarantees:

- **Ack.** An acknowledgement waits for the server's reply (``ack_sync``, at most
  :data:`ACK_TIMEOUT_S`): once :meth:`Outcomes.ack` returned without error the server has
  recorded it, so a nats-server killed right after does not redeliver the message (a
  fire-and-forget ack can be lost with the server, and with it the consumer's delivered
  state: the message came back as a first delivery). A failed acknowledgement is recorded
  in ``last_error`` and otherwise ignored: the message is redelivered and the consumer
  recognises it as done (the writer by the versions already stored, the evaluator by its
  ledger).
- **Hand-back.** A message that cannot be finished now is ``nak``-ed with a delay of 2**n
  seconds on its n-th delivery, at most 60 s (:func:`nak_delay`), so a failing dependency is
  not hammered; from the delivery the consumer names as the last one on, it is dead-lettered
  instead. A hand-back that fails (its dead letter included) is logged, not raised: the
  message comes back after ``ack_wait`` anyway.
- **Dead letter.** The message is stored with its error in the object store under
  ``dlq/<stream>/<yyyy>/<mm>/<dd>/<stream sequence, 12 digits>.json`` (subject, sequence,
  deliveries, headers, error and its type, the ``stage`` that failed, ``project_id``,
  ``rows``, time, the data in base64), and only once that record is durable (S3 answered
  the PUT; the local file and its directory fsync'ed) is the consumer's ``durable`` hook
  awaited (the writer records the message in its ingest ledger there) and then the message
  terminated: nothing leaves the stream unrecorded. If the record cannot be written, or the
  hook fails, :meth:`Outcomes.dead_letter` does not raise and does not terminate: the
  message stays in the stream, held by this consumer (``in_progress`` every
  ``keep_alive_s``, so it burns no delivery) while the record (then the hook) is retried in
  the background with back-off until it succeeds. A consumer that stops
  (:meth:`Outcomes.close`) abandons those retries: the messages come back after
  ``ack_wait`` and are dead-lettered again (same key, one record).
- **Part of a message.** A :class:`DeadPart` dead-letters only some of a message's rows
  (the writer's unstorable spans) under ``<stream sequence>-<suffix>.json``, a key that
  never collides with the whole message's record, with the part's own data and message id
  (so a replay of it is a message of its own). Once that record is durable and the hook
  has run, the message is **acknowledged**, not terminated: its other rows are stored.

The consumers' loops themselves run under :func:`run_supervised`: whatever escapes one run
(a bug, a lost subscription, an unexpected answer) is logged and counted, and the loop is
started again with back-off; the messages the failed run held come back from JetStream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import nats.errors
import orjson
from nats.aio.msg import Msg

from apiary._private import metrics
from apiary.objects import ObjectStore

#: How long an acknowledgement waits for the server's reply.
ACK_TIMEOUT_S = 5.0
#: The longest a handed-back message waits before its redelivery.
MAX_NAK_DELAY_S = 60.0
#: The longest wait between two attempts at a dead letter that could not be written.
MAX_DEAD_LETTER_RETRY_S = 30.0


class OutcomeStats(Protocol):
    """The counters a consumer keeps of its failures."""

    dead_lettered: int
    last_error: str
    dead_letter_failures: int  # attempts at a dead letter that could not be written
    dead_letters_pending: int  # messages held until their dead letter is durable


#: What a consumer awaits once a dead letter is durable, before the message is terminated
#: (or, for a :class:`DeadPart`, acknowledged).
Durable = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DeadPart:
    """Some rows of a message, dead-lettered while the rest of it is stored: ``data`` is a
    message of their own (same encoding as the original), recorded under the key suffix
    ``suffix`` with the message id ``msg_id``."""

    data: bytes
    msg_id: str
    suffix: str = "spans"


@dataclass(frozen=True, slots=True)
class DeadLetterInfo:
    """What a dead-letter record says besides the message and its error: the ``stage``
    that failed, the message's ``project_id`` and its ``rows`` (events) dead-lettered."""

    stage: str | None = None
    project_id: str | None = None
    rows: int | None = None


def nak_delay(deliveries: int) -> float:
    """Seconds until a message handed back on its ``deliveries``-th delivery comes back."""
    return min(2.0 ** deliveries, MAX_NAK_DELAY_S)


def deliveries(msg: Msg) -> int:
    """How many times JetStream has delivered ``msg`` (1 on its first delivery)."""
    return msg.metadata.num_delivered or 1


class Outcomes:
    """The ends of one consumer's deliveries over ``stream``, counted in ``stats`` and logged
    to ``log`` (a dead letter as ``"<what> dead-lettered"``). A message whose dead letter
    cannot be written is kept alive every ``keep_alive_s`` (keep it below ``ack_wait``)."""

    def __init__(self, *, stream: str, objects: ObjectStore, stats: OutcomeStats,
                 log: logging.Logger, what: str, keep_alive_s: float = 5.0) -> None:
        self._stream = stream
        self._objects = objects
        self._stats = stats
        self._log = log
        self._what = what
        self._keep_alive_s = max(keep_alive_s, 0.05)
        self._retries: set[asyncio.Task[None]] = set()

    async def ack(self, msg: Msg) -> None:
        """Acknowledge ``msg`` and wait for the server to confirm it (module docstring); a
        failure is recorded, and the redelivery recognised."""
        try:
            await msg.ack_sync(timeout=ACK_TIMEOUT_S)
        except nats.errors.Error as exc:
            self._stats.last_error = f"ack: {exc}"

    async def hand_back(self, msg: Msg, deliveries: int, error: BaseException, *,
                        last_delivery: int, info: DeadLetterInfo | None = None,
                        durable: Durable | None = None) -> bool:
        """``nak`` ``msg`` with back-off, or dead-letter it (with ``info`` and ``durable``,
        as :meth:`dead_letter`) once ``deliveries`` reaches ``last_delivery``. True if it
        was handed back (whether or not JetStream heard it), False if it was dead-lettered
        (or is held until its dead letter is durable)."""
        handing_back = deliveries < last_delivery
        try:
            if handing_back:
                await msg.nak(delay=nak_delay(deliveries))
            else:
                await self.dead_letter(msg, error, info=info, durable=durable)
        except Exception as exc:  # the message comes back after ack_wait anyway
            self._log.warning("hand-back failed", extra={"error": str(exc)})
        return handing_back

    async def dead_letter(self, msg: Msg, error: BaseException, *,
                          info: DeadLetterInfo | None = None, part: DeadPart | None = None,
                          durable: Durable | None = None) -> None:
        """Store ``msg`` (or only ``part`` of it) and ``error`` in the object store, await
        ``durable``, then terminate ``msg`` (acknowledge it, for a ``part``). Never raises
        for the object store or the hook: a record that cannot be written now, or a hook
        that fails, is retried in the background (module docstring) and ``msg`` is
        terminated only once both succeeded."""
        key, record = self._record(msg, error, info or DeadLetterInfo(), part)
        where: str | None = None
        try:
            where = await self._objects.put(key, record)
            if durable is not None:
                await durable()
        except Exception as exc:
            self._failed(exc, written=where is not None)
            task = asyncio.create_task(
                self._keep_trying(msg, error, key, record, where, durable, part))
            self._retries.add(task)
            self._stats.dead_letters_pending = len(self._retries)
            task.add_done_callback(self._retry_done)
            return
        await self._terminate(msg, error, where, part)

    @property
    def pending(self) -> int:
        """Messages held until their dead letter is durable."""
        return len(self._retries)

    async def close(self) -> None:
        """Abandon the dead letters still being retried (their messages come back after
        ``ack_wait``, and are dead-lettered then)."""
        retries = list(self._retries)
        for task in retries:
            task.cancel()
        await asyncio.gather(*retries, return_exceptions=True)

    # -- internals --------------------------------------------------------------------------

    def _record(self, msg: Msg, error: BaseException, info: DeadLetterInfo,
                part: DeadPart | None) -> tuple[str, bytes]:
        meta = msg.metadata
        suffix = f"-{part.suffix}" if part is not None else ""
        key = (f"dlq/{self._stream}/{time.strftime('%Y/%m/%d', time.gmtime())}/"
               f"{meta.sequence.stream:012d}{suffix}.json")
        tokens = msg.subject.split(".")
        record: dict[str, Any] = {
            "subject": msg.subject,
            "stream_sequence": meta.sequence.stream,
            "deliveries": meta.num_delivered,
            "headers": dict(msg.headers or {}),
            "error": str(error),
            "error_type": type(error).__name__,
            "stage": info.stage,
            "project_id": info.project_id or (tokens[-1] if len(tokens) >= 3 else None),
            "rows": info.rows,
            "dead_lettered_at": time.time(),
            "data_base64": base64.b64encode(part.data if part else msg.data).decode("ascii"),
        }
        if part is not None:
            record["msg_id"] = part.msg_id
            record["part"] = part.suffix
        return key, orjson.dumps(record)

    def _failed(self, exc: BaseException, *, written: bool = False) -> None:
        self._stats.dead_letter_failures += 1
        what = "dead letter written, but its hook failed" if written else \
            "dead letter not written"
        self._stats.last_error = f"{what}: {exc!r}"
        self._log.warning(f"{self._what} could not be dead-lettered; keeping it and retrying",
                          extra={"error": repr(exc), "written": written})

    def _retry_done(self, task: asyncio.Task[None]) -> None:
        self._retries.discard(task)
        self._stats.dead_letters_pending = len(self._retries)

    async def _keep_trying(self, msg: Msg, error: BaseException, key: str, record: bytes,
                           where: str | None, durable: Durable | None,
                           part: DeadPart | None) -> None:
        """Hold ``msg`` (``in_progress``) and write its record, then run ``durable``, with
        back-off until both succeeded; then terminate (or acknowledge) it."""
        delay = 0.5
        while True:
            waited = 0.0
            while waited < delay:
                with contextlib.suppress(Exception):  # a lost beat: redelivered at worst
                    await msg.in_progress()
                step = min(self._keep_alive_s, delay - waited)
                await asyncio.sleep(step)
                waited += step
            try:
                if where is None:
                    where = await self._objects.put(key, record)
                if durable is not None:
                    await durable()
            except Exception as exc:
                self._failed(exc, written=where is not None)
                delay = min(delay * 2, MAX_DEAD_LETTER_RETRY_S)
                continue
            await self._terminate(msg, error, where, part)
            return

    async def _terminate(self, msg: Msg, error: BaseException, where: str,
                         part: DeadPart | None = None) -> None:
        self._stats.dead_lettered += 1
        metrics.inc(metrics.DEAD_LETTERS, stream=self._stream, reason=type(error).__name__)
        self._stats.last_error = f"dead-lettered: {error}"
        self._log.error(f"{self._what} dead-lettered" if part is None
                        else f"part of a {self._what} dead-lettered",
                        extra={"object": where, "error": str(error)})
        try:
            if part is None:
                await msg.term()
            else:  # its other rows are stored
                await msg.ack_sync(timeout=ACK_TIMEOUT_S)
        except Exception as exc:  # redelivered; its record is rewritten under the same key
            self._stats.last_error = f"{'term' if part is None else 'ack'}: {exc!r}"


async def run_supervised(run: Callable[[], Awaitable[None]], *, loop: str,
                         stopping: asyncio.Event,
                         on_restart: Callable[[BaseException], None],
                         log: logging.Logger, first_delay_s: float = 0.5,
                         max_delay_s: float = 30.0) -> None:
    """Run ``run()`` until it returns with ``stopping`` set; after an exception (or a
    return nobody asked for) call ``on_restart`` with it, count it in
    ``apiary_loop_restarts_total{loop=...}`` and run it again after a back-off that doubles
    from ``first_delay_s`` to ``max_delay_s`` (and starts over after a minute of good run).
    Only cancellation ends it otherwise."""
    delay = first_delay_s
    while True:
        started = time.monotonic()
        try:
            await run()
            if stopping.is_set():
                return
            raise RuntimeError(f"the {loop} loop returned without being stopped")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            on_restart(exc)
            metrics.inc(metrics.LOOP_RESTARTS, loop=loop)
            log.error(f"{loop} loop failed; restarting it", exc_info=exc,
                      extra={"error": repr(exc), "retry_in_s": delay})
        if time.monotonic() - started > 60.0:
            delay = first_delay_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=delay)
        if stopping.is_set():
            return
        delay = min(delay * 2, max_delay_s)


class _RestartCounts(Protocol):
    loop_restarts: int
    last_error: str


def task_ended(task: asyncio.Task[None]) -> str:
    """How a finished supervisor task ended, for ``last_error``."""
    return "cancelled" if task.cancelled() else repr(task.exception())


def start_supervised(run: Callable[[], Awaitable[None]], stats: _RestartCounts, *, loop: str,
                     stopping: asyncio.Event, log: logging.Logger,
                     previous: asyncio.Task[None] | None) -> asyncio.Task[None]:
    """A task running ``run`` under :func:`run_supervised`, its restarts counted in
    ``stats``. ``previous`` is the supervisor task this one replaces: having ended at all
    (it never should) counts as a restart too."""
    if previous is not None:
        stats.loop_restarts += 1
        stats.last_error = f"supervisor ended: {task_ended(previous)}"

    def restarted(exc: BaseException) -> None:
        stats.loop_restarts += 1
        stats.last_error = f"loop: {exc!r}"

    return asyncio.create_task(run_supervised(run, loop=loop, stopping=stopping,
                                              on_restart=restarted, log=log))


__all__ = ["MAX_DEAD_LETTER_RETRY_S", "MAX_NAK_DELAY_S", "DeadLetterInfo", "DeadPart",
           "Durable", "OutcomeStats", "Outcomes",
           "deliveries", "nak_delay", "run_supervised", "start_supervised", "task_ended"]
