"""Giving events what they inherit from a session event that arrived after them.

A writer copies a session's ``metadata`` and ``user_properties`` into its events (keys an
event sets itself win) when it knows the session event. An event that names its session
but reaches the writer first (the session's root span ends, and is exported, last) is
stored with its own fields only; the writer records the session (``uninherited_sessions``)
before acknowledging the event.

For each flush, after enrichment, :class:`SessionBackfill`

1. records the sessions whose events the enrichment could not give their inheritance;
2. looks the flush's session events up among the recorded sessions;
3. for those, reads the newest version of each of the session's other events, and writes
   a new version of each one that inheriting changes (version + 1, its rollup deltas
   zero, so the session rollups do not count it again);
4. then deletes the record.

All of it happens before the flush is acknowledged; a redelivered flush finds the events
already inheriting and writes nothing again. Later updates of a session's metadata are not
propagated to its events (see ``docs/architecture.md``, "Known limits").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from apiary.dataplane.enrich import Enricher
from apiary.dataplane.writer._updates import (
    Received,
    Retrying,
    column_pairs,
    event_from_stored,
    for_write,
    same_event,
    stored_tenant,
    with_rollups,
)
from apiary.store import StoreClient, events_to_arrow

_RECORDED_CAPACITY = 100_000


@dataclass
class BackfillStats:
    """Counters of one writer since it started; part of the writer's ``stats()``."""

    uninherited_sessions: int = 0
    backfilled_sessions: int = 0
    backfilled_events: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def session_events(received: Sequence[Received]) -> dict[str, set[str]]:
    """``{project_id: session ids}`` of the session events in the flush."""
    out: dict[str, set[str]] = {}
    for r in received:
        found = {session for kind, session in column_pairs(r, "event_type", "session_id")
                 if kind == "session" and session}
        if found:
            out.setdefault(r.batch["tenant"]["project_id"], set()).update(found)
    return out


class SessionBackfill:
    """One writer's part of late session events. Runs on the writer's loop."""

    def __init__(self, *, store: StoreClient, enricher: Enricher, retrying: Retrying) -> None:
        self._store = store
        self._enricher = enricher
        self._retrying = retrying
        self.stats = BackfillStats()
        # Sessions this writer recorded lately: a long session without a session event
        # (OpenInference's session.id, say) is then recorded once, not at every flush.
        self._recorded: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def settle(self, received: Sequence[Received]) -> None:
        """Record this flush's uninherited sessions, and back-fill the ones it completes."""
        keep = list(received)
        for project_id, sessions in self._enricher.take_uninherited().items():
            new = sorted(s for s in sessions if (project_id, s) not in self._recorded)
            if not new:
                continue
            await self._retrying(self._store.record_uninherited_sessions, project_id, new,
                                 keep=keep)
            self.stats.uninherited_sessions += len(new)
            for session_id in new:
                self._recorded[(project_id, session_id)] = None
            while len(self._recorded) > _RECORDED_CAPACITY:
                self._recorded.popitem(last=False)
        for project_id, sessions in session_events(received).items():
            waiting: list[str] = await self._retrying(
                self._store.uninherited_sessions, project_id, sorted(sessions), keep=keep)
            if waiting:
                await self._backfill(project_id, sorted(waiting), keep)

    async def _backfill(self, project_id: str, sessions: list[str], keep: list[Any]) -> None:
        rows: list[dict[str, Any]] = await self._retrying(
            self._store.latest_events_in_sessions, project_id, sessions, keep=keep)
        tables = []
        for row in rows:
            if row["event_type"] == "session":
                continue
            before = event_from_stored(row)
            after = event_from_stored(row)
            self._enricher.enrich(project_id, [after])  # the session event is known now
            if same_event(before, after):
                continue
            table = events_to_arrow(stored_tenant(row, project_id), int(row["version"]) + 1,
                                    [for_write(after)])
            tables.append(with_rollups(table, row))
        if tables:
            table = pa.concat_tables(tables)
            await self._retrying(self._store.insert_arrow, table, keep=keep)
            self.stats.backfilled_events += table.num_rows
        await self._retrying(self._store.forget_uninherited, project_id, sessions, keep=keep)
        for session_id in sessions:
            self._recorded.pop((project_id, session_id), None)
        self.stats.backfilled_sessions += len(sessions)
