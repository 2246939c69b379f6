"""Messages that may crash their writer: recognised, tried alone, counted durably.

A message that kills its writer process (out of memory, a native crash) never reaches the
writer's hand-back: JetStream redelivers it after ``ack_wait``, with every other message
the dead process held. Such a redelivery is told apart from one the writer asked for: a
writer that hands a message back (``nak``) first records the delivery it handed back in
the JetStream key-value bucket :data:`SUSPECTS_BUCKET` (keyed by the message's stream
sequence). A message delivered again (delivery count > 1) whose previous delivery was not
handed back is a **suspect**: its previous delivery ended without an outcome.

The writer loop (:mod:`apiary.dataplane.writer._loop`) processes suspects in a
*quarantine flush* of their own, one message at a time and with no other flush running,
so a crash during it is that message's alone. Before each quarantine flush the suspect's
attempt count is incremented in the bucket (durable: file storage); when the flush ends
with an outcome the key is removed (or turned into a hand-back record). A message counts
as having crashed its writer ``attempts + 1`` times (the quarantine flushes that never
ended, plus the delivery that made it a suspect); from ``writer_crash_loop_limit`` crashes
on it is dead-lettered with stage ``crash_loop`` instead of being processed again, which
(the limit being below ``writer_max_deliver``) happens before JetStream gives up on it.
An innocent message that was in a crashed flush is tried alone once and stored: it is
never dead-lettered for another message's crash.

Each entry also names the message (its ``Nats-Msg-Id``): an entry of another message
under the same sequence (a stream created again) is ignored. Keys expire after
:data:`ENTRY_TTL_S` (far beyond any redelivery back-off). The bucket
being unreachable makes a suspect's quarantine flush wait: the message is handed back
(``nak``) rather than processed without a durable count.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import orjson
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    BucketNotFoundError,
    KeyDeletedError,
    KeyNotFoundError,
    NotFoundError,
)
from nats.js.kv import KeyValue

#: The bucket of suspect messages' attempt counts and of hand-back records.
SUSPECTS_BUCKET = "writer-suspects"
#: How long an entry is kept after its last write.
ENTRY_TTL_S = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Suspicion:
    """What the bucket says of one delivery: ``suspect`` (its previous delivery ended
    without an outcome) and ``attempts`` (quarantine flushes of it that never ended)."""

    suspect: bool
    attempts: int = 0


class Suspects:
    """The writer's view of :data:`SUSPECTS_BUCKET` (opened, or created, on first use)."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self._js.key_value(SUSPECTS_BUCKET)
            except (BucketNotFoundError, NotFoundError):
                with contextlib.suppress(Exception):  # a concurrent creator may win
                    self._kv = await self._js.create_key_value(KeyValueConfig(
                        bucket=SUSPECTS_BUCKET, history=1, ttl=ENTRY_TTL_S,
                        storage=StorageType.FILE))
                if self._kv is None:
                    self._kv = await self._js.key_value(SUSPECTS_BUCKET)
        return self._kv

    async def _read(self, sequence: int, msg_id: str) -> dict[str, object]:
        kv = await self._bucket()
        try:
            entry = await kv.get(str(sequence))
        except (KeyNotFoundError, KeyDeletedError):
            return {}
        try:
            value = orjson.loads(entry.value or b"{}")
        except orjson.JSONDecodeError:
            return {}
        if not isinstance(value, dict) or value.get("id", "") != msg_id:
            return {}  # another message's (the stream was created again)
        return value

    async def check(self, sequence: int, delivery: int, msg_id: str = "") -> Suspicion:
        """Whether the message ``msg_id`` at ``sequence``, now on its ``delivery``-th
        delivery (> 1), is a suspect. Raises if the bucket cannot be read."""
        entry = await self._read(sequence, msg_id)
        attempts = entry.get("attempts", 0)
        count = attempts if isinstance(attempts, int) else 0
        return Suspicion(entry.get("handed_back") != delivery - 1, count)

    async def attempting(self, sequence: int, attempts: int, msg_id: str = "") -> None:
        """Record, durably, that a quarantine flush of the message is about to start (its
        ``attempts``-th). Raises if the bucket cannot be written."""
        kv = await self._bucket()
        await kv.put(str(sequence), orjson.dumps({"id": msg_id, "attempts": attempts}))

    async def handed_back(self, sequence: int, delivery: int, attempts: int = 0,
                          msg_id: str = "") -> None:
        """Record that the writer handed the message back on its ``delivery``-th
        delivery (so its next delivery is no suspect). Raises if the bucket cannot be
        written (the next delivery is then a suspect: tried alone, which is safe)."""
        kv = await self._bucket()
        await kv.put(str(sequence), orjson.dumps({"id": msg_id, "handed_back": delivery,
                                                  "attempts": attempts}))

    async def settled(self, sequence: int) -> None:
        """Forget the message: it was stored or dead-lettered. Never raises (an entry left
        behind expires, and no settled message comes back)."""
        with contextlib.suppress(Exception):
            kv = await self._bucket()
            await kv.delete(str(sequence))


__all__ = ["ENTRY_TTL_S", "SUSPECTS_BUCKET", "Suspects", "Suspicion"]
