"""Enrichment of a flush: look up what its events inherit, then enrich them in place.

Spans inherit their session from their trace's root and session-level metadata and user
properties from their session (:mod:`apiary.dataplane.enrich`). What the
:class:`~apiary.dataplane.enrich.Enricher` does not remember is looked up in the store, one
query per project and kind for the whole flush. A look-up that fails degrades enrichment
(the events are stored without what they would have inherited; relinking and back-fill
complete them later) and never blocks the flush; retryable store errors are retried (with
the flush's messages kept alive) by ``retrying``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from apiary.dataplane.enrich import Enricher, SessionContext
from apiary.dataplane.writer import _lookups as lookups
from apiary.dataplane.writer._received import FlushMessage
from apiary.errors import StoreError
from apiary.store import StoreClient

log = logging.getLogger("apiary.writer")


class FlushEnrichment:
    """Enriches the messages of a writer's flush (:meth:`enrich`)."""

    def __init__(self, *, store: StoreClient, enricher: Enricher,
                 retrying: Callable[..., Awaitable[Any]], database: str) -> None:
        self._store = store
        self._enricher = enricher
        self._retrying = retrying
        self._database = database

    async def enrich(self, received: Sequence[FlushMessage]) -> None:
        """Enrich in place. A failed store look-up degrades enrichment; it never blocks."""
        by_project: dict[str, list[FlushMessage]] = {}
        for r in received:
            by_project.setdefault(r.batch["tenant"]["project_id"], []).append(r)
        for project_id, group in by_project.items():
            events = [e for r in group for e in r.batch["events"]]
            needed = self._enricher.lookups(project_id, events)
            for r in group:
                if r.table is not None:
                    more = self._enricher.table_lookups(project_id, r.table, r.inherited)
                    needed.traces |= more.traces
                    needed.sessions |= more.sessions
            if needed:
                try:
                    traces, sessions = await self._look_up(
                        project_id, needed.traces, needed.sessions
                    )
                except StoreError as exc:
                    log.warning("enrichment look-up failed", extra={"error": str(exc)})
                    traces, sessions = {}, {}
                self._enricher.learn(
                    project_id, traces=traces, sessions=sessions, asked=needed
                )
            self._enricher.enrich(project_id, events)
            for r in group:
                if r.table is not None:
                    r.table = self._enricher.enrich_table(project_id, r.table, r.inherited)

    async def _look_up(
        self, project_id: str, traces: set[str], sessions: set[str]
    ) -> tuple[dict[str, str], dict[str, SessionContext]]:
        found_traces: dict[str, str] = {}
        found_sessions: dict[str, SessionContext] = {}
        if traces:
            sql, params = lookups.trace_sessions(self._database, project_id, sorted(traces))
            for row in await self._retrying(self._store.query_rows, sql, params):
                found_traces[row["trace_id"]] = row["linked_session"]
        if sessions:
            sql, params = lookups.session_contexts(self._database, project_id, sorted(sessions))
            for row in await self._retrying(self._store.query_rows, sql, params):
                found_sessions[row["session_id"]] = SessionContext(
                    orjson.loads(row["metadata"] or "{}"),
                    orjson.loads(row["user_properties"] or "{}"),
                )
        return found_traces, found_sessions


__all__ = ["FlushEnrichment"]
