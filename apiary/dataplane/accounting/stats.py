"""Exact ingest accounting: accepted, stored, dead-lettered and in flight, per project.

Where each count comes from:

- **stored** and **dead-lettered**: the ingest ledger (``ingest_ledger``, migration 0010),
  where a writer records every message of the ``events`` stream *before* it acknowledges it
  (stored) or terminates it after its dead letter is durable (dead;
  :class:`apiary.dataplane.writer.IngestLedger`).
- **in flight**: the messages the ``events`` stream still retains (interest retention keeps
  a message until the writers acknowledge or terminate it) that the ledger does not name.
  They are read headers-only by an ephemeral consumer on the project's subjects
  (``events.*.<project>``): each message says how many rows it holds (``Apiary-Rows``,
  :func:`apiary.queue.message_rows`; a message published without it is fetched and decoded).
- **accepted** = the ledger's messages and the retained ones, each counted once by its stream
  sequence. So accepted = stored + dead-lettered + in flight, in messages and in rows
  (events, spans, patches), in total and by kind (the subject's second token: ``spans``,
  ``api``, ``updates``, ...), by construction.

Why nothing is missed (nor counted twice): the stream is read first, the ledger after, in
one query (one snapshot of the table). A message is in the ledger before it leaves the
stream, so a message accepted before the read began is either seen in the stream or, having
left it, already in the ledger when the ledger is read; one seen in both counts once, as
settled. While the read runs its consumer holds every message it has not yet seen in the
stream (interest retention), so what it reads is the stream as it was when it began plus
what arrived since. A message settled partly stored and partly dead-lettered (per-span
isolation) counts its rows under each outcome and, as a message, under dead-lettered.

A message's rows are counted as JetStream received it: a redelivered message whose events
were already stored counts its rows once, under stored. A replayed dead letter is a new
message of the stream: it is accepted (and stored) again, and stays counted as
dead-lettered. Purging dead letters does not change the counts.

Bounded: the read takes at most ``timeout_s`` (the stream is bounded by
``events_stream_max_bytes``; headers are ~200 bytes a message) and fails as a retryable
:class:`~apiary.errors.QueueError` rather than answer with a partial count.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from apiary._private import metrics
from apiary.errors import QueueError
from apiary.queue import EVENTS_STREAM, ROWS_HEADER, message_rows
from apiary.store import StoreClient, cover_sequences

#: Headers of retained messages fetched per pull.
FETCH_BATCH = 2_000
#: Longest a read of the stream may take before it fails (retryable).
DEFAULT_TIMEOUT_S = 30.0
#: Messages without a row count fetched (whole) at once.
_DECODE_CONCURRENCY = 32


@dataclass(frozen=True, slots=True)
class Retained:
    """A message the ``events`` stream still holds."""

    sequence: int
    project_id: str
    kind: str
    rows: int


@dataclass(slots=True)
class Tally:
    """Messages and the rows (events, spans, patches) they hold."""

    messages: int = 0
    rows: int = 0

    def add(self, messages: int, rows: int) -> None:
        self.messages += messages
        self.rows += rows

    def as_dict(self) -> dict[str, int]:
        return {"messages": self.messages, "rows": self.rows}


@dataclass(slots=True)
class Accounting:
    """One project's (or kind's) counts; ``accepted`` is their sum."""

    stored: Tally = field(default_factory=Tally)
    dead_lettered: Tally = field(default_factory=Tally)
    in_flight: Tally = field(default_factory=Tally)

    @property
    def accepted(self) -> Tally:
        parts = (self.stored, self.dead_lettered, self.in_flight)
        return Tally(sum(p.messages for p in parts), sum(p.rows for p in parts))

    def merge(self, other: Accounting) -> None:
        self.stored.add(other.stored.messages, other.stored.rows)
        self.dead_lettered.add(other.dead_lettered.messages, other.dead_lettered.rows)
        self.in_flight.add(other.in_flight.messages, other.in_flight.rows)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"accepted": self.accepted.as_dict(), "stored": self.stored.as_dict(),
                "dead_lettered": self.dead_lettered.as_dict(),
                "in_flight": self.in_flight.as_dict()}


@dataclass(slots=True)
class ProjectStats:
    """A project's accounting, in total and by kind."""

    project_id: str
    by_kind: dict[str, Accounting] = field(default_factory=dict)

    def kind(self, kind: str) -> Accounting:
        return self.by_kind.setdefault(kind, Accounting())

    @property
    def total(self) -> Accounting:
        total = Accounting()
        for part in self.by_kind.values():
            total.merge(part)
        return total

    def as_dict(self) -> dict[str, Any]:
        return {"project_id": self.project_id, **self.total.as_dict(),
                "by_kind": {k: self.by_kind[k].as_dict() for k in sorted(self.by_kind)}}


def subject_filter(project_id: str | None) -> str:
    """The subjects of ``project_id`` on the ``events`` stream (every project's: None)."""
    return f"{EVENTS_STREAM}.>" if project_id is None else f"{EVENTS_STREAM}.*.{project_id}"


async def retained_messages(js: JetStreamContext, project_id: str | None, *,
                            timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Retained]:
    """The messages of ``project_id`` (every project's: None) the ``events`` stream holds
    now, headers only, with their row counts. Raises :class:`QueueError` (retryable) when
    JetStream cannot be read within ``timeout_s``."""
    try:
        return await asyncio.wait_for(_retained(js, project_id), timeout=timeout_s)
    except TimeoutError as exc:
        raise QueueError("reading the events stream took too long; retry",
                         timeout_s=timeout_s, project_id=project_id) from exc
    except nats.errors.Error as exc:
        raise QueueError(f"JetStream unreachable: {exc!r}", project_id=project_id) from exc


async def _retained(js: JetStreamContext, project_id: str | None) -> list[Retained]:
    last = int((await js.stream_info(EVENTS_STREAM)).state.last_seq or 0)
    config = ConsumerConfig(
        description="apiary ingest accounting (ephemeral, headers only)",
        deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, headers_only=True,
        inactive_threshold=30.0, mem_storage=True, num_replicas=1, max_waiting=1,
    )
    sub = await js.pull_subscribe(subject_filter(project_id), stream=EVENTS_STREAM,
                                  config=config)
    found: list[Retained] = []
    undecided: list[tuple[int, str, str]] = []
    name: str | None = None
    try:
        info = await sub.consumer_info()
        name = info.name
        pending = int(info.num_pending or 0)
        while pending > 0:
            try:
                batch = await sub.fetch(min(pending, FETCH_BATCH), timeout=5.0)
            except (TimeoutError, nats.errors.TimeoutError):
                if (await sub.consumer_info()).num_pending:  # not read: never a partial count
                    raise QueueError("JetStream did not deliver the stream's headers in time; "
                                     "retry", project_id=project_id) from None
                break  # the stream was purged meanwhile: nothing more to deliver
            for msg in batch:
                meta = msg.metadata
                kind, project = _kind_and_project(msg.subject)
                headers = msg.headers or {}
                sequence = int(meta.sequence.stream)
                if ROWS_HEADER in headers:
                    found.append(Retained(sequence, project, kind,
                                          message_rows(headers, None)))
                else:
                    undecided.append((sequence, project, kind))
                pending = int(meta.num_pending or 0)
                if sequence >= last:
                    pending = 0  # what arrived after the read began may be left out
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        if name is not None:  # else inactive_threshold removes it
            with contextlib.suppress(Exception):
                await js.delete_consumer(EVENTS_STREAM, name)
    found += await _counted(js, undecided)
    return found


def _kind_and_project(subject: str) -> tuple[str, str]:
    """``events.<kind>.<project>`` → (kind, project); a subject without them → ``""``."""
    tokens = subject.split(".", 2)
    return (tokens[1] if len(tokens) > 1 else "", tokens[2] if len(tokens) > 2 else "")


async def _counted(js: JetStreamContext,
                   undecided: list[tuple[int, str, str]]) -> list[Retained]:
    """Rows of messages published without ``Apiary-Rows``: fetched whole and decoded."""
    slots = asyncio.Semaphore(_DECODE_CONCURRENCY)

    async def one(sequence: int, project: str, kind: str) -> Retained | None:
        async with slots:
            try:
                raw = await js.get_msg(EVENTS_STREAM, sequence)
            except NotFoundError:
                return None  # settled and removed meanwhile: the ledger has it
        return Retained(sequence, project, kind, message_rows(raw.headers, raw.data))

    done = await asyncio.gather(*(one(*u) for u in undecided))
    return [r for r in done if r is not None]


def tally(retained: Iterable[Retained], ledger: Iterable[dict[str, Any]]
          ) -> dict[str, ProjectStats]:
    """Each project's accounting from the retained messages (read first) and the ledger's
    totals (read after, :meth:`~apiary.store.StoreClient.ledger_totals` over ranges that
    cover every retained sequence)."""
    in_stream = {(r.project_id, r.sequence): r for r in retained}
    projects: dict[str, ProjectStats] = {}

    def of(project_id: str) -> ProjectStats:
        return projects.setdefault(project_id, ProjectStats(project_id))

    for row in ledger:
        counts = of(row["project_id"]).kind(row["kind"])
        in_stream.pop((row["project_id"], row["sequence"]), None)  # settled: counted here
        counts.stored.rows += row["stored_rows"]
        counts.dead_lettered.rows += row["dead_rows"]
        (counts.dead_lettered if row["dead"] else counts.stored).messages += row["messages"]
    for r in in_stream.values():
        of(r.project_id).kind(r.kind).in_flight.add(1, r.rows)
    return projects


async def ingest_stats(js: JetStreamContext, store: StoreClient, project_id: str | None, *,
                       timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, ProjectStats]:
    """The accounting of ``project_id`` (of every project with any message: None), keyed
    by project (see the module docstring for what is counted and why it is exact).
    :class:`QueueError` or :class:`~apiary.errors.StoreError` (retryable when the queue or
    the store is unavailable)."""
    retained = await retained_messages(js, project_id, timeout_s=timeout_s)
    ranges = cover_sequences([r.sequence for r in retained])
    ledger = await store.ledger_totals(project_id, ranges)
    projects = tally(retained, ledger)
    if project_id is not None:
        projects.setdefault(project_id, ProjectStats(project_id))
    for stats in projects.values():
        for state, counts in stats.total.as_dict().items():
            metrics.set_gauge(metrics.INGEST_ROWS, counts["rows"],
                              project_id=stats.project_id, state=state)
    return projects
