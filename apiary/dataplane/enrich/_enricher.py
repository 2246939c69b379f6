"""Enrichment applied by a writer to every batch before it is stored (docs/architecture.md,
"The event model").

- **Session linking**: an event with no session takes its trace's session (learnt from any
  event of the trace that named one, in this batch, earlier batches or the store); a trace
  that never names one becomes its own session, with an id derived from the trace id, so
  every span of a plain OpenTelemetry trace lands in one session.
- **Inheritance**: the session event's ``metadata`` and ``user_properties`` reach the other
  events of the session; keys an event sets itself win.
- **Computed fields**: ``duration`` from the times when missing; ``total_tokens`` from
  prompt + completion; ``cost`` from the shipped price table for model events.

Inheritance happens when the session's context is known: from the same batch, the
writer's cache, or one store look-up per batch for sessions it has not seen. An event that
reaches a writer before its session event was ever written is stored with its own metadata,
and its session is reported (:meth:`Enricher.take_uninherited`): the writer gives it what
it inherits once the session event arrives (``apiary.dataplane.writer._backfill``). A trace linked
to its derived session is reported too (:meth:`Enricher.take_derived`), for the writer to move
should a later span name the session (``apiary.dataplane.writer._relink``).

Two places enrich. The ingestion replica enriches each request with what it knows from
its own traffic (``enrich(..., final=False)``: no store look-ups, no trace-derived
sessions yet) and ships the rows as Arrow, naming the sessions it resolved. The writer
finishes the job on those rows (:meth:`Enricher.table_lookups`,
:meth:`Enricher.enrich_table`): it links what is still unlinked and inherits for the
sessions the replica did not know, touching only those rows.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson
import pyarrow as pa

from apiary.dataplane.enrich._prices import PriceTable
from apiary.event import Event


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What a session passes down to its events."""

    metadata: dict[str, Any]
    user_properties: dict[str, Any]


#: Marks a session looked up in the store and not found (no session event yet).
_ABSENT = SessionContext({}, {})


@dataclass(slots=True)
class Lookups:
    """What the writer must ask the store before :meth:`Enricher.enrich` can finish."""

    traces: set[str] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.traces or self.sessions)


K = TypeVar("K")
V = TypeVar("V")


class _LRU(Generic[K, V]):
    def __init__(self, capacity: int) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._capacity = capacity

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self._capacity:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def session_id_for_trace(trace_id: str) -> str:
    """The session of a trace that never named one: its trace id, formatted as a UUID."""
    t = trace_id
    return f"{t[:8]}-{t[8:12]}-{t[12:16]}-{t[16:20]}-{t[20:32]}"


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return 0
    return 0


class Enricher:
    """Per-writer enrichment state. Not thread-safe; one per writer actor."""

    def __init__(
        self,
        prices: PriceTable,
        *,
        capacity: int = 200_000,
        absent_ttl_s: float = 30.0,
    ) -> None:
        self.prices = prices
        self._trace_sessions: _LRU[tuple[str, str], str] = _LRU(capacity)
        self._contexts: _LRU[tuple[str, str], tuple[SessionContext, float]] = _LRU(capacity)
        self._absent_ttl_s = absent_ttl_s
        self._derived: dict[str, dict[str, str]] = {}
        self._uninherited: dict[str, set[str]] = {}

    # -- learning -------------------------------------------------------------------------

    def _learn_batch(self, project_id: str, events: list[Event]) -> None:
        for event in events:
            session_id = event["session_id"]
            if not session_id:
                continue
            if event["trace_id"]:
                self._trace_sessions.put((project_id, event["trace_id"]), session_id)
            if event["event_type"] == "session":
                self._contexts.put(
                    (project_id, session_id),
                    (SessionContext(event["metadata"], event["user_properties"]), 0.0),
                )

    def learn(
        self,
        project_id: str,
        *,
        traces: dict[str, str],
        sessions: dict[str, SessionContext],
        asked: Lookups,
    ) -> None:
        """Record what the store answered for ``asked``; unanswered sessions are absent.

        A trace's session named by an event of the batch being enriched wins over the
        store's answer, which may still be the trace's derived session.
        """
        for trace_id, session_id in traces.items():
            known = self._trace_sessions.get((project_id, trace_id))
            if known is None or known == session_id_for_trace(trace_id):
                self._trace_sessions.put((project_id, trace_id), session_id)
        now = time.monotonic()
        for session_id in asked.sessions:
            context = sessions.get(session_id)
            if context is None:
                self._contexts.put((project_id, session_id), (_ABSENT, now + self._absent_ttl_s))
            else:
                self._contexts.put((project_id, session_id), (context, 0.0))

    def _context(self, project_id: str, session_id: str) -> SessionContext | None:
        entry = self._contexts.get((project_id, session_id))
        if entry is None:
            return None
        context, expires = entry
        if expires and expires < time.monotonic():
            return None
        return context

    def _derive(self, project_id: str, trace_id: str) -> str:
        session_id = session_id_for_trace(trace_id)
        self._trace_sessions.put((project_id, trace_id), session_id)
        self._derived.setdefault(project_id, {})[trace_id] = session_id
        return session_id

    def take_derived(self) -> dict[str, dict[str, str]]:
        """The traces linked to their derived session since the last call, per project
        (``{project_id: {trace_id: session_id}}``); the writer records them."""
        derived, self._derived = self._derived, {}
        return derived

    def _note_uninherited(self, project_id: str, session_id: str, trace_id: str) -> None:
        # A trace's derived session never gets a session event of its own.
        if session_id != session_id_for_trace(trace_id):
            self._uninherited.setdefault(project_id, set()).add(session_id)

    def take_uninherited(self) -> dict[str, set[str]]:
        """The sessions whose events were enriched without their session event (none was
        stored yet) since the last call, per project; the writer records them."""
        uninherited, self._uninherited = self._uninherited, {}
        return uninherited

    # -- the two passes -------------------------------------------------------------------

    def enrich_request(self, project_id: str, events: list[Event]) -> set[str]:
        """What the ingestion replica does: learn from the request and enrich with what is
        known, without the store (``final=False``); returns the resolved sessions."""
        self.lookups(project_id, events)
        return self.enrich(project_id, events, final=False)

    def lookups(self, project_id: str, events: list[Event]) -> Lookups:
        """Learn from ``events`` themselves, then say what only the store can tell."""
        self._learn_batch(project_id, events)
        needed = Lookups()
        for event in events:
            session_id = event["session_id"]
            if not session_id:
                trace_id = event["trace_id"]
                if trace_id and self._trace_sessions.get((project_id, trace_id)) is None:
                    needed.traces.add(trace_id)
            elif event["event_type"] != "session" and self._context(project_id, session_id) is None:
                needed.sessions.add(session_id)
        return needed

    def enrich(self, project_id: str, events: list[Event], *, final: bool = True) -> set[str]:
        """Link, inherit and compute, in place. Call after :meth:`lookups` (and ``learn``).

        ``final=False`` (the ingestion replica) leaves events of traces with no known
        session unlinked, for the writer to settle. Returns the sessions whose context was
        known here (their events inherited; a session event is its own context).
        """
        prices = self.prices
        resolved: set[str] = set()
        for event in events:
            if not event["session_id"] and event["trace_id"]:
                session_id = self._trace_sessions.get((project_id, event["trace_id"]))
                if session_id is None and final:
                    session_id = self._derive(project_id, event["trace_id"])
                if session_id is not None:
                    event["session_id"] = session_id
            if event["event_type"] == "session":
                resolved.add(event["session_id"])
            elif event["session_id"]:
                context = self._context(project_id, event["session_id"])
                if context is _ABSENT and final:
                    self._note_uninherited(project_id, event["session_id"],
                                           event["trace_id"] or "")
                if context is not None:
                    resolved.add(event["session_id"])
                    if context.metadata:
                        event["metadata"] = {**context.metadata, **event["metadata"]}
                    if context.user_properties:
                        event["user_properties"] = {
                            **context.user_properties, **event["user_properties"]
                        }
            if not event["duration"] and event["end_time"] > event["start_time"] > 0:
                event["duration"] = event["end_time"] - event["start_time"]
            metadata = event["metadata"]
            if type(metadata) is not dict:
                # What the compiled module's declared type refuses, refused from source too.
                raise TypeError(f"event field 'metadata' is {type(metadata).__name__}, "
                                "not an object")
            if "prompt_tokens" in metadata or "completion_tokens" in metadata:
                prompt = _as_int(metadata.get("prompt_tokens"))
                completion = _as_int(metadata.get("completion_tokens"))
                if "total_tokens" not in metadata:
                    metadata["total_tokens"] = prompt + completion
                if event["event_type"] == "model" and "cost" not in metadata:
                    config = event["config"]
                    cost = prices.cost(
                        str(config.get("model") or ""),
                        str(config.get("provider") or ""),
                        prompt,
                        completion,
                    )
                    if cost is not None:
                        metadata["cost"] = cost
        return resolved

    # -- Arrow rows (spans shipped by the ingestion replica) ------------------------------

    def table_lookups(self, project_id: str, table: pa.Table, resolved: frozenset[str]
                      ) -> Lookups:
        """Learn from the rows, then say what only the store can tell (cf. :meth:`lookups`).

        Rows whose session is in ``resolved`` (the replica inherited for them) ask nothing.
        """
        sessions = table.column("session_id").to_pylist()
        traces = table.column("trace_id").to_pylist()
        types = table.column("event_type").to_pylist()
        needed = Lookups()
        metadata = user = None
        for i, (session_id, trace_id, event_type) in enumerate(
                zip(sessions, traces, types, strict=True)):
            if not session_id:
                if trace_id and self._trace_sessions.get((project_id, trace_id)) is None:
                    needed.traces.add(trace_id)
                continue
            if trace_id:
                self._trace_sessions.put((project_id, trace_id), session_id)
            if event_type == "session":
                if metadata is None or user is None:
                    metadata = table.column("metadata").to_pylist()
                    user = table.column("user_properties").to_pylist()
                self._contexts.put((project_id, session_id), (SessionContext(
                    _loads(metadata[i]), _loads(user[i])), 0.0))
        for i, session_id in enumerate(sessions):
            if (session_id and session_id not in resolved and types[i] != "session"
                    and self._context(project_id, session_id) is None):
                needed.sessions.add(session_id)
        return needed

    def enrich_table(self, project_id: str, table: pa.Table, resolved: frozenset[str]
                     ) -> pa.Table:
        """Link unlinked rows and inherit for sessions not in ``resolved``; the rows of
        sessions the replica already resolved are passed through untouched."""
        sessions = table.column("session_id").to_pylist()
        types = table.column("event_type").to_pylist()
        traces: list[Any] | None = None
        metadata: list[Any] | None = None
        user: list[Any] | None = None
        linked = changed = False
        for i, session_id in enumerate(sessions):
            if not session_id:
                if traces is None:
                    traces = table.column("trace_id").to_pylist()
                trace_id = traces[i]
                if trace_id:
                    found = self._trace_sessions.get((project_id, trace_id))
                    if found is None:
                        found = self._derive(project_id, trace_id)
                    sessions[i] = session_id = found
                    linked = True
            if not session_id or session_id in resolved or types[i] == "session":
                continue
            context = self._context(project_id, session_id)
            if context is None or context is _ABSENT:
                if context is _ABSENT:
                    if traces is None:
                        traces = table.column("trace_id").to_pylist()
                    self._note_uninherited(project_id, session_id, traces[i] or "")
                continue
            if context.metadata:
                if metadata is None:
                    metadata = table.column("metadata").to_pylist()
                metadata[i] = orjson.dumps({**context.metadata, **_loads(metadata[i])})
                changed = True
            if context.user_properties:
                if user is None:
                    user = table.column("user_properties").to_pylist()
                user[i] = orjson.dumps({**context.user_properties, **_loads(user[i])})
                changed = True
        if linked:
            table = _replace(table, "session_id", pa.array(sessions, pa.string()))
        if changed:
            if metadata is not None:
                table = _replace(table, "metadata", pa.array(metadata, pa.binary()))
            if user is not None:
                table = _replace(table, "user_properties", pa.array(user, pa.binary()))
        return table


def _loads(value: Any) -> dict[str, Any]:
    if not value:
        return {}
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _replace(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, column)
