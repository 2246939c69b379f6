"""The ingest ledger: how each message of the ``events`` stream was settled.

The writer records every message of the stream here **before** it acknowledges it
(outcome ``stored``, the rows it carried) or terminates it after its dead letter is durable
(outcome ``dead``); a message partly stored and partly dead-lettered (per-span isolation)
gets one entry of each. Since JetStream keeps a message until the writers acknowledge or
terminate it (interest retention), every accepted message is at every moment in the
stream, in the ledger, or in both: that is what makes the accounting of
:mod:`apiary.dataplane.accounting` exact (accepted = stored + dead-lettered + in flight).

Guarantees of :meth:`IngestLedger.settled`:

- **Durable when it returns**: the rows are in ClickHouse's ``ingest_ledger`` table, whose
  parts and their directory are fsync'ed before the insert completes (migration 0010).
- **Idempotent**: recording the same entries again (a retry after a timeout that hid the
  commit, a redelivered message settled again) carries the same deduplication token and
  stores nothing more; reads count each (project, stream sequence, outcome) once anyway.
- **Errors are the store's**: :class:`~apiary.errors.StoreUnavailable` (retryable) while
  the store cannot be reached, :class:`~apiary.errors.StoreRejected` for entries the
  ledger cannot hold. Nothing is retried here: the writer retries it like any store call
  and acks or terminates the messages only after it returned.

A stream sequence identifies a message for the life of the ``events`` stream: a stream
deleted and created again starts its sequences over, and its ledger must be started over
with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from apiary.store import StoreClient


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """How one message (or the part of it with one outcome) of the ``events`` stream was
    settled.

    ``kind`` is the batch kind (``spans``, ``api``, ``updates``, ...: the subject's second
    token); ``rows`` the events (or patches) of the message with this outcome, as received
    (before events already stored were dropped on a redelivery): what
    :func:`apiary.queue.message_rows` counts for a message settled whole.
    """

    project_id: str
    stream_sequence: int
    kind: str
    outcome: Literal["stored", "dead"]
    rows: int


class IngestLedger:
    """Records settled messages in the store's ``ingest_ledger`` table (module docstring)."""

    def __init__(self, store: StoreClient) -> None:
        self._store = store

    async def settled(self, entries: Sequence[LedgerEntry]) -> None:
        """Record how these messages were settled. Durable when it returns; idempotent (the
        same entry recorded twice counts once). Raises StoreError (retryable when the store is
        unavailable): the caller retries it like any store call, and acks/terminates the
        message only after it returned."""
        if not entries:
            return
        await self._store.record_settled([
            (e.project_id, e.stream_sequence, e.kind, e.outcome, e.rows) for e in entries])
