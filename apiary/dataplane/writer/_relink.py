"""Moving a trace out of its derived session when a later span names the session.

A span that names no session takes its trace's session; when no span of the trace has
named one yet, the writer links it to a session derived from the trace id
(:func:`apiary.dataplane.enrich.session_id_for_trace`). OpenTelemetry exports a span when it ends,
so a root span (which ends last) often arrives after its children, and it may be the one
that names the session (``honeyhive.session_id`` on the root only, or a root of type
``session``). Its children then sit in the wrong session.

For each flush, after enrichment, :class:`TraceRelinker`

1. records the traces the enrichment just linked to their derived session
   (``derived_traces``), before the flush's messages are acknowledged;
2. collects the traces whose events in the flush name another session, and asks which of
   them were recorded;
3. for those, reads the newest version of each event stored under the derived session,
   gives it the named session (with that session's metadata and user properties, keys the
   event set itself winning), and inserts it there, skipping events already there;
4. then deletes the derived session's rows, its rollup, and the trace's record.

Guarantees: moved events are inserted before the old rows are deleted, and both happen
before the flush's messages are acknowledged, so an event is stored at least once at any
moment, and a redelivered flush finishes an interrupted move (step 3 skips what is
already there). Between steps 3 and 4 a reader may see a moved event in both sessions for
the length of one delete. Session rollups count each moved event once, in the named session.

Known race (several writers): a writer that links children to the derived session while
another is storing the root in the same instant may record the trace after the other
looked for it; those children stay in the derived session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from apiary.dataplane.enrich import Enricher, session_id_for_trace
from apiary.dataplane.writer._updates import (
    Received,
    Retrying,
    column_pairs,
    event_from_stored,
    for_write,
    stored_tenant,
)
from apiary.event import Event
from apiary.store import StoreClient, events_to_arrow


@dataclass
class RelinkStats:
    """Counters of one writer since it started; part of the writer's ``stats()``."""

    derived_traces: int = 0
    relinked_traces: int = 0
    moved_events: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def named_sessions(received: Sequence[Received]) -> dict[str, dict[str, str]]:
    """``{project_id: {trace_id: session}}``: the first session each trace's events in the
    flush name, when it is not the trace's derived session."""
    out: dict[str, dict[str, str]] = {}
    for r in received:
        found = out.setdefault(r.batch["tenant"]["project_id"], {})
        for trace_id, session_id in column_pairs(r, "trace_id", "session_id"):
            if (trace_id and session_id and trace_id not in found
                    and session_id != session_id_for_trace(trace_id)):
                found[trace_id] = session_id
    return {project: traces for project, traces in out.items() if traces}


class TraceRelinker:
    """One writer's part of late session naming. Runs on the writer's loop."""

    def __init__(self, *, store: StoreClient, enricher: Enricher, retrying: Retrying) -> None:
        self._store = store
        self._enricher = enricher
        self._retrying = retrying
        self.stats = RelinkStats()

    async def settle(self, received: Sequence[Received]) -> None:
        """Record this flush's derived traces, and move the traces it names."""
        keep = list(received)
        for project_id, traces in self._enricher.take_derived().items():
            await self._retrying(self._store.record_derived_traces, project_id, traces,
                                 keep=keep)
            self.stats.derived_traces += len(traces)
        for project_id, named in named_sessions(received).items():
            recorded: dict[str, str] = await self._retrying(
                self._store.derived_traces, project_id, sorted(named), keep=keep)
            # derived session → named session, for the recorded traces
            moves = {derived: named[trace] for trace, derived in recorded.items()
                     if derived != named[trace]}
            if moves:
                await self._move(project_id, moves, sorted(recorded), keep)

    async def _move(self, project_id: str, moves: dict[str, str], traces: list[str],
                    keep: list[Any]) -> None:
        rows: list[dict[str, Any]] = await self._retrying(
            self._store.latest_events_in_sessions, project_id, sorted(moves), keep=keep)
        present: dict[str, int] = await self._retrying(
            self._store.existing_versions, project_id, [r["event_id"] for r in rows],
            sorted(set(moves.values())), keep=keep) if rows else {}
        tables = []
        for row in rows:
            if row["event_id"] in present:
                continue
            event: Event = event_from_stored(row)
            event["session_id"] = moves[row["session_id"]]
            self._enricher.enrich(project_id, [event])  # inherits from the named session
            # The stored version, so that a redelivery of the event's own message is still
            # recognised as already stored.
            tables.append(events_to_arrow(stored_tenant(row, project_id), int(row["version"]),
                                          [for_write(event)]))
        if tables:
            table = pa.concat_tables(tables)
            await self._retrying(self._store.insert_arrow, table, keep=keep)
            self.stats.moved_events += table.num_rows
        await self._retrying(self._store.forget_sessions, project_id, sorted(moves), traces,
                             keep=keep)
        self.stats.relinked_traces += len(traces)
