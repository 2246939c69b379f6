"""How a JetStream consumer ends a delivery: acknowledge it, hand it back with back-off, or
dead-letter it.

Both data-plane consumers use this, each over its own stream and with its own counters: the
writer (:mod:`apiary.dataplane.writer`, stream ``events``) and the evaluator
(:mod:`apiary.dataplane.evaluation.loop`, stream ``evaluation``). Their durable pull consumers
take explicit acks and deliver a message at most ``max_deliver`` times (docs/architecture.md,
"The data path" and "Evaluation"). Guarantees:

- **Ack.** A failed acknowledgement is recorded in ``last_error`` and otherwise ignored: the
  message is redelivered and the consumer recognises it as done (the writer by the versions
  already stored, the evaluator by its ledger).
- **Hand-back.** A message that cannot be finished now is ``nak``-ed with a delay of 2**n
  seconds on its n-th delivery, at most 60 s (:func:`nak_delay`), so a failing dependency is
  not hammered; from the delivery the consumer names as the last one on, it is dead-lettered
  instead. A hand-back that fails (its dead letter included) is logged, not raised: the
  message comes back after ``ack_wait`` anyway.
- **Dead letter.** The message is stored with its error in the object store under
  ``dlq/<stream>/<yyyy>/<mm>/<dd>/<stream sequence, 12 digits>.json`` (subject, sequence,
  deliveries, headers, error and its type, time, the data in base64), and only once that
  record is durable is the message terminated: nothing leaves the stream unrecorded. If the
  record cannot be written, :meth:`Outcomes.dead_letter` raises and the message stays.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Protocol

import nats.errors
import orjson
from nats.aio.msg import Msg

from apiary.objects import ObjectStore

#: The longest a handed-back message waits before its redelivery.
MAX_NAK_DELAY_S = 60.0


class OutcomeStats(Protocol):
    """The counters a consumer keeps of its failures."""

    dead_lettered: int
    last_error: str


def nak_delay(deliveries: int) -> float:
    """Seconds until a message handed back on its ``deliveries``-th delivery comes back."""
    return min(2.0 ** deliveries, MAX_NAK_DELAY_S)


def deliveries(msg: Msg) -> int:
    """How many times JetStream has delivered ``msg`` (1 on its first delivery)."""
    return msg.metadata.num_delivered or 1


class Outcomes:
    """The ends of one consumer's deliveries over ``stream``, counted in ``stats`` and logged
    to ``log`` (a dead letter as ``"<what> dead-lettered"``)."""

    def __init__(self, *, stream: str, objects: ObjectStore, stats: OutcomeStats,
                 log: logging.Logger, what: str) -> None:
        self._stream = stream
        self._objects = objects
        self._stats = stats
        self._log = log
        self._what = what

    async def ack(self, msg: Msg) -> None:
        """Acknowledge ``msg``; a failure is recorded, and the redelivery recognised."""
        try:
            await msg.ack()
        except nats.errors.Error as exc:
            self._stats.last_error = f"ack: {exc}"

    async def hand_back(self, msg: Msg, deliveries: int, error: BaseException, *,
                        last_delivery: int) -> bool:
        """``nak`` ``msg`` with back-off, or dead-letter it once ``deliveries`` reaches
        ``last_delivery``. True if it was handed back (whether or not JetStream heard it),
        False if it was dead-lettered."""
        handing_back = deliveries < last_delivery
        try:
            if handing_back:
                await msg.nak(delay=nak_delay(deliveries))
            else:
                await self.dead_letter(msg, error)
        except Exception as exc:  # the message comes back after ack_wait anyway
            self._log.warning("hand-back failed", extra={"error": str(exc)})
        return handing_back

    async def dead_letter(self, msg: Msg, error: BaseException) -> None:
        """Store ``msg`` and ``error`` in the object store, then terminate ``msg``."""
        meta = msg.metadata
        key = (f"dlq/{self._stream}/{time.strftime('%Y/%m/%d', time.gmtime())}/"
               f"{meta.sequence.stream:012d}.json")
        record = {
            "subject": msg.subject,
            "stream_sequence": meta.sequence.stream,
            "deliveries": meta.num_delivered,
            "headers": dict(msg.headers or {}),
            "error": str(error),
            "error_type": type(error).__name__,
            "dead_lettered_at": time.time(),
            "data_base64": base64.b64encode(msg.data).decode("ascii"),
        }
        where = await self._objects.put(key, orjson.dumps(record))
        self._stats.dead_lettered += 1
        self._stats.last_error = f"dead-lettered: {error}"
        self._log.error(f"{self._what} dead-lettered", extra={"object": where, "error": str(error)})
        await msg.term()


__all__ = ["MAX_NAK_DELAY_S", "OutcomeStats", "Outcomes", "deliveries", "nak_delay"]
