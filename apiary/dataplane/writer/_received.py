"""What a writer holds of each message in a flush, and the counters it keeps.

:class:`FlushMessage` is one JetStream delivery being written: its decoded batch (JSON
events) or its Arrow rows, kept as Arrow until something needs event dicts
(:class:`LazyEvents`). :class:`StageFailed` says which stage of a flush failed and whether
that failure is transient (hand the messages back) or poison (isolate it). The writer loop
(:mod:`apiary.dataplane.writer._loop`) and its flush path
(:mod:`apiary.dataplane.writer._flush`) are their only users.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast, overload

import nats.errors
import pyarrow as pa
from nats.aio.msg import Msg

from apiary.errors import ApiaryError
from apiary.event import Event, EventBatch
from apiary.queue import (
    ARROW_ENCODING,
    ENCODING_HEADER,
    ROWS_HEADER,
    WIRE_SCHEMA,
    decode_batch,
    decode_table,
)
from apiary.store import arrow_to_events


def message_id(msg: Msg) -> str:
    """What identifies ``msg`` in an insert's deduplication token: its stream sequence
    (unique in the stream) and its ``Nats-Msg-Id``."""
    try:
        sequence = str(msg.metadata.sequence.stream)
    except Exception:  # not a JetStream delivery (no reply subject to parse)
        sequence = ""
    return f"{sequence}:{(msg.headers or {}).get('Nats-Msg-Id', '')}"


class LazyEvents(Sequence[Event]):
    """The events of Arrow rows, turned into dicts only if something iterates them."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table
        self._events: list[Event] | None = None

    def _all(self) -> list[Event]:
        if self._events is None:
            self._events = arrow_to_events(self._table)
        return self._events

    def __bool__(self) -> bool:
        return bool(self._table.num_rows > 0)

    def __len__(self) -> int:
        return int(self._table.num_rows)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        return self._all()[index]

    def __iter__(self) -> Iterator[Event]:
        return iter(self._all())


@dataclass(slots=True)
class FlushMessage:
    """One message in a flush: a JSON batch (``batch["events"]``), or Arrow rows (``table``,
    with ``batch`` holding the envelope) until something needs them as dicts."""

    msg: Msg
    batch: EventBatch
    deliveries: int
    table: pa.Table | None = None
    inherited: frozenset[str] = frozenset()
    #: The batch as received, kept when a redelivery drops events already stored: the
    #: after-write hooks still see them (their tasks may not have been published).
    received_as: EventBatch | None = None
    #: Events (or patches) of the message as received: what its ledger entry counts.
    received_rows: int = 0
    #: Set once the message was handed back (nak) or dead-lettered by this flush.
    handed_back: bool = False
    #: For a suspect (a redelivery after a crash): quarantine flushes of it never ended.
    attempts: int = 0
    #: Its events may be stored already (a redelivery, even one JetStream counts as the
    #: first: see the module docstring): the flush drops those before the insert.
    possibly_stored: bool = False

    @property
    def rows(self) -> int:
        return self.table.num_rows if self.table is not None else len(self.batch["events"])

    def materialize(self) -> None:
        """Continue with event dicts (for patches of these events, say)."""
        if self.table is not None:
            self.batch["events"] = arrow_to_events(self.table)
            self.table = None

    def for_hooks(self) -> EventBatch:
        """The batch as after-write hooks read it: Arrow rows become dicts only if read."""
        if self.received_as is not None:
            return self.received_as
        if self.table is None:
            return self.batch
        lazy: EventBatch = {**self.batch, "events": cast(list[Event], LazyEvents(self.table))}
        return lazy


@dataclass
class WriterStats:
    """Counters of one writer since it started; exported as Prometheus metrics."""

    messages: int = 0
    events_written: int = 0
    inserts: int = 0
    redelivered_messages: int = 0
    duplicates_dropped: int = 0
    insert_retries: int = 0
    dead_lettered: int = 0
    dead_letter_failures: int = 0  # dead-letter writes that failed (each retried)
    dead_letters_pending: int = 0  # messages held until their dead letter is durable
    loop_restarts: int = 0  # times the loop ended with an exception and was started again
    isolations: int = 0  # flushes whose failure was isolated (halves run again)
    spans_dead_lettered: int = 0  # events dead-lettered out of messages otherwise stored
    suspects: int = 0  # redeliveries after a crash, processed in a quarantine flush
    crash_loops: int = 0  # messages dead-lettered for crashing their writer
    first_deliveries_checked: int = 0  # first deliveries checked as possibly stored
    reconnects_seen: int = 0  # NATS reconnects after which deliveries were checked
    flushes_waited: int = 0  # flushes that waited for an earlier one holding their messages
    last_insert_rows: int = 0
    last_insert_seconds: float = 0.0
    tracking_seconds: float = 0.0  # deriving the flushes' schema and detail rows, in total
    last_error: str = ""
    started_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class StageFailed(Exception):
    """A stage of a flush raised ``error``: transient (hand the messages back) or not
    (isolate the message, then the rows, that cause it)."""

    def __init__(self, stage: str, error: Exception) -> None:
        super().__init__(f"{stage}: {error!r}")
        self.stage = stage
        self.error = error

    @property
    def transient(self) -> bool:
        """Whether running it again later may succeed whatever the messages: a retryable
        Apiary error (the store's are retried before they get here), NATS, a timeout."""
        if isinstance(self.error, ApiaryError):
            return self.error.retryable
        return isinstance(self.error, (nats.errors.Error, TimeoutError, ConnectionError))


def without_earlier_copies(held: list[FlushMessage], later: FlushMessage) -> list[FlushMessage]:
    """``held`` without earlier deliveries of ``later``'s message. A fetch that timed out
    can leave deliveries in the subscription's queue, where nothing keeps them alive: the
    next fetch returns such a stale delivery and, past ``ack_wait``, JetStream's redelivery
    of the same message. Only the later one is processed (it is checked for events already
    stored; its ack settles the message): two copies would be stored twice, the stale one
    unchecked, under different deduplication tokens."""
    sequence = later.msg.metadata.sequence.stream
    return [r for r in held if r.msg.metadata.sequence.stream != sequence]


def nats_msg_id(msg: Msg) -> str:
    return str((msg.headers or {}).get("Nats-Msg-Id", ""))


def project_of(batch: EventBatch) -> str:
    return batch["tenant"]["project_id"]


def header_rows(msg: Msg) -> int | None:
    """The message's :data:`~apiary.queue.ROWS_HEADER`, if it has a count there."""
    value = (msg.headers or {}).get(ROWS_HEADER)
    return int(value) if value is not None and value.isdigit() else None


def decode(msg: Msg, delivered: int) -> FlushMessage:
    """``msg`` as a flush holds it; :class:`~apiary.errors.PoisonMessage` if it does not
    decode."""
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


def fresh(r: FlushMessage) -> FlushMessage:
    """``r`` decoded again from its message, as it was received (a re-run of a failed
    stage must not see what the failed run changed in place)."""
    again = decode(r.msg, r.deliveries)
    again.attempts = r.attempts
    again.possibly_stored = r.possibly_stored
    return again


__all__ = ["FlushMessage", "LazyEvents", "StageFailed", "WriterStats", "decode", "fresh",
           "header_rows", "message_id", "nats_msg_id", "project_of", "without_earlier_copies"]
