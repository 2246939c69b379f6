"""The writer: pull batches from JetStream, enrich, insert into ClickHouse as Arrow, apply
updates, relink late sessions, back-fill inheritance, then acknowledge.

Public surface:

- :class:`WriterLoop` (with its :class:`WriterStats`): one writer's consume → enrich →
  insert → ack loop on the durable consumer ``events/writers``; its module docstring states
  the guarantees (nothing acknowledged before it is stored, nothing stored twice, poison
  messages dead-lettered). Tests and in-process planes run it directly.
- :class:`WriterService`: one writer as the pool runs it (connect, run the loop, report
  stats, drain on stop); the Ray actor :class:`apiary.actors.writer.EventWriter` only
  wraps it.
- :class:`IngestLedger` (with :class:`LedgerEntry`): how each message was settled
  (stored or dead-lettered), recorded before it is acked or terminated; what the exact
  accounting (:mod:`apiary.dataplane.accounting`) counts.
- :class:`UpdateApplier` and :func:`validate_patch`: updates (``PUT /events``) merged into
  the stored events; :class:`TraceRelinker` and :class:`SessionBackfill`: late sessions
  (a trace's session named after its children were stored, a session event that arrives
  after its events).

Internals: ``_ledger``, ``_loop`` (receiving, scheduling flushes, quarantine), ``_flush``
(a flush's stages, settling, isolation of poison), ``_received`` (what a flush holds of
each message, the counters), ``_updates``, ``_relink``, ``_backfill``, ``_enrichment``,
``_lookups``, ``_service``, ``_suspects`` (messages that crash their writer: recognised,
counted, dead-lettered with stage ``crash_loop``).
"""

from apiary.dataplane.writer._backfill import SessionBackfill
from apiary.dataplane.writer._ledger import IngestLedger, LedgerEntry
from apiary.dataplane.writer._loop import WriterLoop
from apiary.dataplane.writer._received import WriterStats
from apiary.dataplane.writer._relink import TraceRelinker
from apiary.dataplane.writer._service import WriterService
from apiary.dataplane.writer._updates import UpdateApplier, validate_patch

__all__ = [
    "IngestLedger",
    "LedgerEntry",
    "SessionBackfill",
    "TraceRelinker",
    "UpdateApplier",
    "WriterLoop",
    "WriterService",
    "WriterStats",
    "validate_patch",
]
