"""The statements behind the ingest ledger (``migrations/0010_ingest_ledger.sql``): how
each message of the ``events`` stream was settled, and the per-project totals.

What the ledger means and how the accounting uses it is
:mod:`apiary.dataplane.accounting`; the writer records into it through
:class:`apiary.dataplane.writer.IngestLedger`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pyarrow as pa

from apiary.errors import InvalidRequest, StoreRejected
from apiary.store._filters import Params
from apiary.store._queries import Statement, _db

#: The outcomes a ledger row may record.
OUTCOMES = ("stored", "dead")

#: One ledger row as it crosses to the store: (project_id, stream_sequence, kind, outcome,
#: rows).
LedgerRow = tuple[str, int, str, str, int]

LEDGER_SCHEMA = pa.schema([
    ("project_id", pa.string()), ("stream_sequence", pa.uint64()), ("outcome", pa.string()),
    ("kind", pa.string()), ("rows", pa.uint32()),
])

#: Most sequence ranges one totals query names; more are merged (see
#: :func:`cover_sequences`).
MAX_RANGES = 64


def check_rows(rows: Sequence[LedgerRow]) -> None:
    """Refuse rows the ledger cannot hold (:class:`StoreRejected`, not retryable)."""
    for _project_id, sequence, _kind, outcome, count in rows:
        # project_id and kind may be empty: a message on a subject that names neither is
        # settled too (and shown to the operator only).
        if outcome not in OUTCOMES:
            raise StoreRejected(f"a ledger row's outcome is one of {OUTCOMES}",
                                 outcome=outcome)
        if sequence < 1 or not 0 <= count < 2**32:
            raise StoreRejected("a ledger row's stream sequence is positive and its rows "
                                 "a 32-bit count", stream_sequence=sequence, rows=count)


def ledger_to_arrow(rows: Sequence[LedgerRow]) -> pa.Table:
    """Rows of ``ingest_ledger``, in a canonical order."""
    ordered = sorted(set(rows))
    return pa.Table.from_arrays(
        [pa.array([r[0] for r in ordered], pa.string()),
         pa.array([r[1] for r in ordered], pa.uint64()),
         pa.array([r[3] for r in ordered], pa.string()),
         pa.array([r[2] for r in ordered], pa.string()),
         pa.array([r[4] for r in ordered], pa.uint32())],
        schema=LEDGER_SCHEMA,
    )


def ledger_dedup_token(rows: Sequence[LedgerRow]) -> str:
    """The ``insert_deduplication_token`` of recording ``rows``: the same rows (in any
    order) give the same token."""
    digest = hashlib.blake2b(digest_size=20, person=b"apiary-ledger-v1")
    for row in sorted(set(rows)):
        digest.update("\x00".join(map(str, row)).encode())
        digest.update(b"\x01")
    return digest.hexdigest()


def cover_sequences(sequences: Sequence[int], limit: int = MAX_RANGES) -> list[tuple[int, int]]:
    """At most ``limit`` inclusive ranges covering every one of ``sequences``: runs of
    consecutive sequences, the smallest gaps between them merged first. A range may cover
    sequences not listed (the caller sorts those out); none listed is left out."""
    ordered = sorted(set(sequences))
    if not ordered:
        return []
    ranges = [[ordered[0], ordered[0]]]
    for s in ordered[1:]:
        if s == ranges[-1][1] + 1:
            ranges[-1][1] = s
        else:
            ranges.append([s, s])
    if len(ranges) > limit:
        # Keep the limit - 1 widest gaps as cuts; merge across every other gap.
        gaps = sorted(range(1, len(ranges)),
                      key=lambda i: ranges[i][0] - ranges[i - 1][1], reverse=True)
        cuts = sorted(gaps[:limit - 1])
        merged: list[list[int]] = []
        start = 0
        for cut in [*cuts, len(ranges)]:
            merged.append([ranges[start][0], ranges[cut - 1][1]])
            start = cut
        ranges = merged
    return [(lo, hi) for lo, hi in ranges]


def plan_ledger_totals(database: str, project_id: str | None,
                       ranges: Sequence[tuple[int, int]]) -> Statement:
    """The ledger's totals in one read (one snapshot of the table).

    One row per (project, kind, whether the message has a dead-lettered part, ``sequence``):
    ``messages``, ``stored_rows``, ``dead_rows``. ``sequence`` is the message's stream
    sequence when it lies in one of ``ranges`` (one row per such message), else 0 (the
    totals of every other message). ``project_id`` None: every project.
    """
    params = Params()
    where = ""
    if project_id is not None:
        if not project_id:
            raise InvalidRequest("a project_id is required", field="project_id")
        where = f"WHERE project_id = {params.bind(project_id, 'String')}"
    lows = params.bind([lo for lo, _ in ranges], "Array(UInt64)")
    highs = params.bind([hi for _, hi in ranges], "Array(UInt64)")
    return Statement(
        "SELECT project_id, kind, dead, "
        f"if(arrayExists((lo, hi) -> stream_sequence BETWEEN lo AND hi, {lows}, {highs}), "
        "stream_sequence, toUInt64(0)) AS sequence, "
        "count() AS messages, sum(stored) AS stored_rows, sum(dead_part) AS dead_rows "
        "FROM (SELECT project_id, stream_sequence, any(kind) AS kind, "
        "sumIf(rows, outcome = 'stored') AS stored, sumIf(rows, outcome = 'dead') AS dead_part, "
        "max(outcome = 'dead') AS dead "
        f"FROM {_db(database)}.ingest_ledger FINAL {where} "
        "GROUP BY project_id, stream_sequence) "
        "GROUP BY project_id, kind, dead, sequence",
        params.values,
    )
