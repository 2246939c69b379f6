"""The delivery records: which (message, channel) deliveries are finished or being made,
beyond one delivery of the message by JetStream.

A JetStream key-value bucket (``notification-deliveries``), one key per delivery id
(:func:`~apiary.dataplane.notifications.senders.delivery_id`). Its value is one of

- ``claimed``: a notifier is sending it, until ``until`` (unix seconds): a **claim**, taken
  with a compare-and-set before the first attempt (:meth:`DeliveryLedger.claim`) and
  extended before each wait between attempts (:meth:`DeliveryLedger.extend`), so two copies
  of one notification (a redelivery, a copy published again after JetStream's duplicate
  window) never send to one channel at the same time. A claim whose holder died expires at
  ``until`` (at most one back-off plus one attempt plus a margin ahead) and is then taken
  over;
- ``delivered``: the receiver accepted it, written **after** that and **before** the
  message is acknowledged;
- ``dead_lettered``: it failed for good, written after its dead letter is durable.

A notifier that receives a message looks each of its channels up first and sends only to
those it could claim; a replayed dead letter (``apiary dlq replay``) claims its
``dead_lettered`` channels again.

Durable when :meth:`~DeliveryLedger.claim`, :meth:`~DeliveryLedger.extend` and
:meth:`~DeliveryLedger.record` return: JetStream acknowledged the write (file storage, the
configured replicas, fsync'ed by the embedded server). Records expire after
``max(2 x notify_max_age_s, 1 day)``, longer than any message is retried.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Literal

import orjson
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from apiary.dataplane.evaluation.ledger import open_bucket
from apiary.settings import ApiarySettings

DELIVERIES_BUCKET = "notification-deliveries"
Outcome = Literal["delivered", "dead_lettered"]
State = Literal["claimed", "delivered", "dead_lettered"]


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer of :meth:`DeliveryLedger.claim`: ``revision`` is set when the caller now
    holds the claim; otherwise ``state`` says why not (``claimed``: another holder, alive
    until ``until``; ``delivered``/``dead_lettered``: finished)."""

    revision: int | None
    state: State | None = None
    until: float = 0.0

    @property
    def mine(self) -> bool:
        return self.revision is not None


class DeliveryLedger:
    """Claims and finished deliveries (module docstring)."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, settings: ApiarySettings) -> DeliveryLedger:
        config = KeyValueConfig(
            bucket=DELIVERIES_BUCKET, description="Apiary: notification deliveries finished",
            history=1, ttl=max(2 * settings.notify_max_age_s, 86_400.0),
            storage=StorageType.FILE, replicas=settings.nats_replicas,
        )
        return cls(await open_bucket(js, config))

    async def _read(self, delivery: str) -> tuple[int, dict[str, object]] | None:
        try:
            entry = await self._kv.get(delivery)
        except (KeyNotFoundError, KeyDeletedError):
            return None
        if entry.value is None or entry.revision is None:
            return None
        value = orjson.loads(entry.value)
        return entry.revision, value if isinstance(value, dict) else {}

    async def outcome(self, delivery: str) -> Outcome | None:
        """How the delivery ``delivery`` ended, or None if it has not."""
        found = await self._read(delivery)
        state = None if found is None else found[1].get("outcome")
        if state == "delivered" or state == "dead_lettered":
            return state
        return None

    async def claim(self, delivery: str, *, owner: str, hold_s: float,
                    again: bool = False) -> Claim:
        """Claim ``delivery`` for ``hold_s`` seconds: held (``revision`` set) unless it is
        finished (a ``dead_lettered`` one is claimed again when ``again``: a replay) or
        another live claim holds it."""
        value = self._claim_value(owner, hold_s)
        try:
            return Claim(await self._kv.create(delivery, value))
        except KeyWrongLastSequenceError:
            pass
        found = await self._read(delivery)
        if found is None:  # expired or deleted meanwhile: try once more next time
            return Claim(None, "claimed", time.time())
        revision, current = found
        state = current.get("outcome")
        until = float(current.get("until") or 0.0)  # type: ignore[arg-type]
        if state == "delivered" or (state == "dead_lettered" and not again):
            return Claim(None, state)
        if state == "claimed" and until > time.time():
            return Claim(None, "claimed", until)
        try:  # an expired claim (its holder died), or a dead letter replayed
            return Claim(await self._kv.update(delivery, value, last=revision))
        except KeyWrongLastSequenceError:
            return Claim(None, "claimed", time.time())

    async def extend(self, delivery: str, *, owner: str, revision: int,
                     hold_s: float) -> int | None:
        """Hold the claim at ``revision`` ``hold_s`` seconds from now; its new revision, or
        None if it was taken over meanwhile (expired)."""
        try:
            return await self._kv.update(delivery, self._claim_value(owner, hold_s),
                                         last=revision)
        except KeyWrongLastSequenceError:
            return None

    async def release(self, delivery: str, *, owner: str, revision: int) -> None:
        """Give the claim at ``revision`` up (its holder stops before finishing): another
        copy may claim it at once. Nothing happens if it was taken over meanwhile."""
        with contextlib.suppress(KeyWrongLastSequenceError):
            await self._kv.update(delivery, self._claim_value(owner, -1.0), last=revision)

    async def record(self, delivery: str, outcome: Outcome, *, channel_id: str,
                     msg_id: str, attempts: int | None = None,
                     detail: str | None = None) -> None:
        """Durable when it returns (JetStream acknowledged the put). ``attempts`` and
        ``detail`` (how it ended) are kept for the delivery's activity report."""
        doc: dict[str, object] = {"outcome": outcome, "channel_id": channel_id,
                                  "msg_id": msg_id}
        if attempts is not None:
            doc["attempts"] = attempts
        if detail is not None:
            doc["detail"] = detail
        await self._kv.put(delivery, orjson.dumps(doc))

    async def finished(self, delivery: str) -> dict[str, object] | None:
        """The record of a finished delivery (``outcome`` ``delivered`` or
        ``dead_lettered``, with ``attempts`` and ``detail`` when recorded), else None."""
        found = await self._read(delivery)
        if found is None or found[1].get("outcome") not in ("delivered", "dead_lettered"):
            return None
        return found[1]

    @staticmethod
    def _claim_value(owner: str, hold_s: float) -> bytes:
        return orjson.dumps({"outcome": "claimed", "owner": owner,
                             "until": time.time() + hold_s})


__all__ = ["DELIVERIES_BUCKET", "Claim", "DeliveryLedger", "Outcome", "State"]
