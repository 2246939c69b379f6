"""The event store: one object the writer and the query API use, over either driver.

Methods marked :func:`~apiary.store._remote.remote` are also reachable from any process of
the cluster through a :class:`~apiary.store.StoreClient` (async, same names and arguments).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pyarrow as pa

from apiary.errors import NotFound
from apiary.event import Event, EventPatch, Tenant
from apiary.store._attributes import events_to_arrow, with_attributes
from apiary.store._chart_spec import parse_chart_request
from apiary.store._charts import plan_chart, shape_chart
from apiary.store._drivers import ClickHouseDriver
from apiary.store._duplicates import DuplicateRegister, DuplicateSnapshot, repeated_hashes
from apiary.store._experiments import (
    plan_run_event_details,
    plan_run_events,
    plan_run_metrics,
    plan_run_session_ids,
    plan_run_sessions,
)
from apiary.store._export_reads import read_export_page
from apiary.store._filters import attribute_path
from apiary.store._ingest_ledger import (
    check_rows,
    ledger_dedup_token,
    ledger_to_arrow,
    plan_ledger_totals,
)
from apiary.store._late_sessions import (
    derived_traces_to_arrow,
    plan_derived_traces,
    plan_forget_sessions,
    plan_forget_uninherited,
    plan_uninherited_sessions,
    uninherited_sessions_to_arrow,
)
from apiary.store._migrations import apply_migrations
from apiary.store._queries import (
    DEDUP_METHODS,
    DedupMethod,
    ExportPlan,
    Statement,
    plan_count_duplicate_rows,
    plan_count_events,
    plan_count_rows,
    plan_event_details,
    plan_event_schema,
    plan_existing_versions,
    plan_export,
    plan_opaque_paths,
    shape_export,
)
from apiary.store._remote import remote
from apiary.store._rows import ComputedFields, row_to_event
from apiary.store._session_queries import (
    build_session_tree,
    plan_session_events,
    plan_session_list,
    plan_session_rows,
    plan_session_sums,
    session_page_cursor,
    session_sort,
    shape_session,
)
from apiary.store._tracking import FieldTracking, track_fields
from apiary.store._updates import (
    patches_to_arrow,
    plan_latest_events,
    plan_patches,
    plan_recent_patched,
    rows_to_patches,
)

#: Ids per existing-versions lookup; larger requests are split (keeps each bound
#: parameter well below ClickHouse's query size limits over HTTP).
VERSION_LOOKUP_CHUNK = 10_000


log = logging.getLogger(__name__)
_T = TypeVar("_T")


class EventStore:
    """Writes events and runs the read queries of one ClickHouse database.

    Thread-safe as far as the driver is (both drivers are). Every read takes the
    ``project_id`` it is scoped to; nothing reads across projects. Exact reads collapse
    versions with ``dedup_method`` (``"final"``, the measured faster one, by default).
    """

    def __init__(self, driver: ClickHouseDriver, *, database: str | None = None,
                 dedup_method: DedupMethod = "final") -> None:
        if dedup_method not in DEDUP_METHODS:
            raise ValueError(f"dedup_method must be one of {DEDUP_METHODS}")
        self.driver = driver
        self.database = database or driver.database
        self.dedup_method: DedupMethod = dedup_method
        #: Set by :meth:`track_duplicates` in the one process that inserts (the chDB owner).
        self.duplicates: DuplicateRegister | None = None
        self._pruned_at: dict[str, float] = {}
        #: Exports and charts answered without FINAL over the project, and with it.
        self.export_reads = {"without_final": 0, "final": 0}
        self.chart_reads = {"without_final": 0, "final": 0}

    def track_duplicates(self, *, background: bool = True,
                         register: DuplicateRegister | None = None) -> DuplicateRegister:
        """Keep the register of keys stored more than once (:mod:`._duplicates`), so that
        exports read without FINAL over the project. Only for the process that makes
        every insert into this database (embedded chDB's owner): an insert from elsewhere
        would go unseen. Call after :meth:`migrate`; the load of the stored keys runs in a
        thread when ``background`` (reads use FINAL until it ends)."""
        self.duplicates = register if register is not None else DuplicateRegister()
        if background:
            threading.Thread(target=self._load_duplicates, name="apiary-duplicates-load",
                             daemon=True).start()
        else:
            self._load_duplicates()
        return self.duplicates

    def _load_duplicates(self) -> None:
        register = self.duplicates
        assert register is not None
        try:
            started = time.perf_counter()
            hashes = self.driver.query_arrow(
                f"SELECT key_hash FROM {self._db}.events").column("key_hash").to_numpy()
            twice = repeated_hashes(hashes)
            stored_twice: list[tuple[str, int]] = []
            if len(twice):
                stored_twice = [(str(r["project_id"]), int(r["key_hash"]))
                                for r in self.driver.query_rows(
                    f"SELECT DISTINCT project_id, key_hash FROM {self._db}.events "
                    "WHERE key_hash IN {twice:Array(UInt64)}",
                    {"twice": [int(h) for h in twice]})]
            register.load(hashes, stored_twice)
            log.info("duplicate register ready", extra={
                "rows": len(hashes), "seconds": round(time.perf_counter() - started, 2)})
        except Exception:
            log.exception("could not load the duplicate register; exports collapse with FINAL")
            register.fail()

    @remote
    def read_state(self) -> dict[str, Any]:
        """How exports are read here: ``duplicates`` is ``"ready"`` (the register is loaded:
        exports and charts read without FINAL), ``"loading"``, ``"failed"`` or ``"off"``
        (not the inserting process, or a ClickHouse server: FINAL); ``export_reads`` and
        ``chart_reads`` count the reads answered each way since the store opened."""
        register = self.duplicates
        if register is None:
            state = "off"
        elif register.ready:
            state = "ready"
        else:
            state = "failed" if register.failed else "loading"
        return {"duplicates": state, "export_reads": dict(self.export_reads),
                "chart_reads": dict(self.chart_reads)}

    @property
    def _db(self) -> str:
        return f"`{self.database}`"

    # --- schema and writes ---------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply pending migrations; returns the ones applied now."""
        return apply_migrations(self.driver, self.database)

    def insert_events(self, tenant: Tenant, version: int, events: Sequence[Event],
                      computed: Sequence[ComputedFields | None] | None = None, *,
                      dedup_token: str | None = None) -> int:
        """Insert ``events`` of ``tenant`` at ``version``; returns the row count.

        One insert, so the materialized views see the batch once. Durable when it returns
        (the tables fsync parts, migration 0009). Repeating it with the same
        ``dedup_token`` stores nothing more (see :meth:`insert_arrow`); without one, the
        caller checks :meth:`existing_versions` for redelivered batches.
        """
        table = events_to_arrow(tenant, version, events, computed)
        self.insert_arrow(table, dedup_token=dedup_token)
        return int(table.num_rows)

    @remote
    def insert_arrow(self, table: pa.Table, dedup_token: str | None = None,
                     tracking: FieldTracking | None = None) -> None:
        """Insert a table built by :func:`~apiary.store.events_to_arrow`, then its schema
        and detail tracking rows (``tracking``, :func:`~apiary.store.track_fields` of
        ``table``: derived here when not given, so the caller's process should derive it).

        Durable when it returns: ``events``, its rollups and the tracking tables fsync each
        part and its directory before the insert completes (migration 0009). With
        ``dedup_token`` (:func:`~apiary.store.insert_dedup_token`), an insert repeated with
        the same token within the tables' deduplication window (the last 10,000 inserts)
        stores nothing more, neither in ``events`` nor in the session rollups nor in
        ``event_schemas`` (whose insert carries a token derived from it; the view it
        replaces counted such a retry twice): an insert that timed out after ClickHouse
        committed part of it can be retried without counting anything twice, and the
        retry stores what the first attempt did not. ``project_event_details`` needs no
        token (a ``uniq`` state and min/max). Without ``dedup_token`` nothing is
        deduplicated (``inserted_at`` makes every events block unique): a repeat counts
        again, as the views counted it. The events go first: tracking rows are never
        stored for events that were not. A table encoded before migration 0011 gets its
        attribute arrays here (:func:`~apiary.store._attributes.with_attributes`).
        """
        if self.duplicates is None:
            self.driver.insert_arrow(f"{self.database}.events", with_attributes(table),
                                     dedup_token=dedup_token)
        else:
            # Before the insert is sent: a read that could see its rows sees the mark.
            observed = self.duplicates.observe(table)
            try:
                self.driver.insert_arrow(f"{self.database}.events", with_attributes(table),
                                         dedup_token=dedup_token)
            finally:
                self.duplicates.settle(observed)
        if tracking is None:
            tracking = track_fields(table)
        # Without a token the events are never deduplicated (their inserted_at default
        # makes each block unique), so neither are these rows: a token of their own.
        token = f"{dedup_token}:event_schemas" if dedup_token else uuid.uuid4().hex
        self.driver.insert_arrow(f"{self.database}.event_schemas", tracking.schemas,
                                 dedup_token=token)
        self.driver.insert_arrow(f"{self.database}.project_event_details_input",
                                 tracking.details)

    @remote
    def insert_arrow_ipc(self, data: pa.Buffer | bytes, dedup_token: str | None = None,
                         tracking: FieldTracking | None = None) -> None:
        """Insert the table encoded by :func:`~apiary.store.arrow_ipc` (read without
        copying it): how a writer's table crosses to the chDB owner as one buffer. Same
        guarantees as :meth:`insert_arrow`."""
        self.insert_arrow(pa.ipc.open_stream(data).read_all(), dedup_token=dedup_token,
                          tracking=tracking)

    @remote
    def existing_versions(self, project_id: str, event_ids: Sequence[str],
                          session_ids: Sequence[str] | None = None) -> dict[str, int]:
        """``{event_id: highest stored version}`` for those of ``event_ids`` stored."""
        ids = list(dict.fromkeys(event_ids))
        found: dict[str, int] = {}
        for start in range(0, len(ids), VERSION_LOOKUP_CHUNK):
            stmt = plan_existing_versions(self.database, project_id,
                                          ids[start:start + VERSION_LOOKUP_CHUNK],
                                          session_ids)
            for row in self._rows(stmt):
                found[row["event_id"]] = int(row["version"])
        return found

    # --- traces linked to a derived session, and moving them (apiary.dataplane.writer._relink) ---

    @remote
    def record_derived_traces(self, project_id: str, traces: Mapping[str, str]) -> None:
        """Remember that ``traces`` (trace id → derived session) were linked that way."""
        if traces:
            self.driver.insert_arrow(f"{self.database}.derived_traces",
                                     derived_traces_to_arrow(project_id, traces))

    @remote
    def derived_traces(self, project_id: str, trace_ids: Sequence[str]) -> dict[str, str]:
        """``{trace_id: derived session}`` for those of ``trace_ids`` linked that way."""
        if not trace_ids:
            return {}
        rows = self._rows(plan_derived_traces(self.database, project_id, trace_ids))
        return {str(r["trace_id"]): str(r["session_id"]) for r in rows}

    @remote
    def forget_sessions(self, project_id: str, session_ids: Sequence[str],
                        trace_ids: Sequence[str]) -> None:
        """Delete the rows and rollups of ``session_ids`` and the records of ``trace_ids``
        (after their events were stored again elsewhere); idempotent."""
        for stmt in plan_forget_sessions(self.database, project_id, session_ids, trace_ids):
            self.driver.command(stmt.sql, stmt.parameters)

    @remote
    def record_uninherited_sessions(self, project_id: str, session_ids: Sequence[str]) -> None:
        """Remember that events of ``session_ids`` were stored before their session event."""
        if session_ids:
            self.driver.insert_arrow(f"{self.database}.uninherited_sessions",
                                     uninherited_sessions_to_arrow(project_id, session_ids))

    @remote
    def uninherited_sessions(self, project_id: str, session_ids: Sequence[str]) -> list[str]:
        """Those of ``session_ids`` recorded by :meth:`record_uninherited_sessions`."""
        if not session_ids:
            return []
        rows = self._rows(plan_uninherited_sessions(self.database, project_id, session_ids))
        return [str(r["session_id"]) for r in rows]

    @remote
    def forget_uninherited(self, project_id: str, session_ids: Sequence[str]) -> None:
        """Delete the records of ``session_ids``; idempotent."""
        stmt = plan_forget_uninherited(self.database, project_id, session_ids)
        self.driver.command(stmt.sql, stmt.parameters)

    # --- the ingest ledger (apiary.store._ingest_ledger) -----------------------------------

    @remote
    def record_settled(self, rows: Sequence[tuple[str, int, str, str, int]]) -> None:
        """Record in ``ingest_ledger`` how messages of the ``events`` stream were settled:
        ``(project_id, stream_sequence, kind, outcome, rows)`` each, outcome ``stored`` or
        ``dead``. Durable when it returns (parts and directory fsync'ed, migration 0010).
        Idempotent: the same rows recorded again store nothing more (same deduplication
        token), and reads count a (project, sequence, outcome) once whatever was recorded."""
        if not rows:
            return
        check_rows(rows)
        self.driver.insert_arrow(f"{self.database}.ingest_ledger", ledger_to_arrow(rows),
                                 dedup_token=ledger_dedup_token(rows))

    @remote
    def ledger_totals(self, project_id: str | None,
                      ranges: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
        """The ledger's totals by project, kind and whether a message has a dead-lettered
        part, in one read; messages whose stream sequence lies in one of ``ranges``
        (inclusive) one row each (see :func:`~apiary.store._ingest_ledger.
        plan_ledger_totals`). ``project_id`` None: every project."""
        rows = self._rows(plan_ledger_totals(self.database, project_id, ranges))
        return [{"project_id": str(r["project_id"]), "kind": str(r["kind"]),
                 "dead": bool(r["dead"]), "sequence": int(r["sequence"]),
                 "messages": int(r["messages"]), "stored_rows": int(r["stored_rows"]),
                 "dead_rows": int(r["dead_rows"])} for r in rows]

    # --- updates (PUT /events): the patch log and the merge's reads --------------------

    @remote
    def insert_patches(self, tenant: Tenant, patches: Sequence[EventPatch]) -> int:
        """Append ``patches`` of ``tenant`` to ``event_updates``; returns the row count."""
        if not patches:
            return 0
        self.driver.insert_arrow(f"{self.database}.event_updates",
                                 patches_to_arrow(tenant, patches))
        return len(patches)

    @remote
    def event_patches(self, project_id: str,
                      event_ids: Sequence[str]) -> dict[str, list[EventPatch]]:
        """``{event_id: patches in application order}`` for those of ``event_ids`` patched."""
        ids = list(dict.fromkeys(event_ids))
        found: dict[str, list[EventPatch]] = {}
        for start in range(0, len(ids), VERSION_LOOKUP_CHUNK):
            stmt = plan_patches(self.database, project_id, ids[start:start + VERSION_LOOKUP_CHUNK])
            found.update(rows_to_patches(self._rows(stmt)))
        return found

    @remote
    def latest_events(self, project_id: str, event_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The newest stored version of those of ``event_ids`` stored, in API shape plus the
        derived columns (``cost``, tokens, ...) and ``version``."""
        ids = list(dict.fromkeys(event_ids))
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), VERSION_LOOKUP_CHUNK):
            found += self._latest(plan_latest_events(
                self.database, project_id, ids[start:start + VERSION_LOOKUP_CHUNK],
                method=self.dedup_method))
        return found

    @remote
    def latest_events_in_sessions(self, project_id: str,
                                  session_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Like :meth:`latest_events`, for every event of ``session_ids`` (a primary-key
        range each)."""
        if not session_ids:
            return []
        return self._latest(plan_latest_events(self.database, project_id,
                                               sorted(set(session_ids)), key="session_id",
                                               method=self.dedup_method))

    def _latest(self, stmt: Statement) -> list[dict[str, Any]]:
        found = []
        for row in self._rows(stmt):
            event = row_to_event(row)
            event["version"] = int(row["version"])
            found.append(event)
        return found

    @remote
    def recently_patched(self, *, hours: int = 24,
                         limit: int = 100_000) -> list[tuple[str, str]]:
        """``(project_id, event_id)`` of the events patched in the last ``hours``."""
        stmt = plan_recent_patched(self.database, hours=hours, limit=limit)
        return [(str(r["project_id"]), str(r["event_id"])) for r in self._rows(stmt)]

    # --- reads -----------------------------------------------------------------------

    @remote
    def export(self, project_id: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /v1/events/export``: ``{"events", "totalEvents", "count"}``.

        See :func:`~apiary.store._queries.plan_export` for the request; bad filters,
        fields or paging are :class:`~apiary.errors.InvalidRequest`.
        """
        plan = plan_export(self.database, project_id, request, method=self.dedup_method,
                           indexed_paths=self._indexed_paths(project_id, request))
        found = self._export_without_final(plan)
        self.export_reads["final" if found is None else "without_final"] += 1
        if found is not None:
            keys, total = found
        else:
            keys = self._rows(plan.page)
            if keys:
                total = int(keys[0]["total"])
            elif plan.page_number == 1 and not plan.continued:
                total = 0
            else:  # past the last page: nothing carried the total
                total = int(self._rows(plan.total)[0]["n"])
        rows = self._rows(plan.rows_for(keys)) if keys else []
        return shape_export(plan, rows, total, keys)

    def _export_without_final(
        self, plan: ExportPlan,
    ) -> tuple[list[dict[str, Any]], int] | None:
        """The page's keys and the total read without FINAL over the project (apiary.store.
        _export_reads), or None when the register cannot vouch for it (:meth:`_vouched`)
        or the page is too deep for the scan."""
        parts = plan.parts
        if parts is None:
            return None

        def read(snapshot: DuplicateSnapshot) -> tuple[list[dict[str, Any]], int] | None:
            assert parts is not None
            page = read_export_page(self.database, parts, snapshot, self._rows,
                                    default_sort=plan.sort.default)
            return None if page is None else (page.keys, page.total)

        return self._vouched(parts.project_id, read)

    def _vouched(self, project_id: str, read: Callable[[DuplicateSnapshot], _T | None],
                 ) -> _T | None:
        """``read`` run on a snapshot of the project's keys stored twice, kept only if no
        key of the project was marked while it ran (an insert it may have half seen): run
        again once, then None. None too when the register is not kept here, not loaded,
        or holds too many of the project's keys: the caller reads with FINAL."""
        register = self.duplicates
        if register is None:
            return None
        self._maybe_prune(project_id)
        for _ in range(2):
            snapshot = register.snapshot(project_id)
            if snapshot is None:
                return None
            answer = read(snapshot)
            if answer is None:
                return None
            if register.unchanged(project_id, snapshot.epoch):
                return answer
        return None

    #: Prune a project's marked keys when it has more than this many ...
    PRUNE_ABOVE = 1_000
    #: ... at most this often (seconds).
    PRUNE_EVERY_S = 60.0

    def _maybe_prune(self, project_id: str) -> None:
        """Unmark the keys whose rows merges have collapsed since (one query by primary key
        over the marked sessions), when the project has many and was not pruned lately."""
        register = self.duplicates
        assert register is not None
        now = time.monotonic()
        if now - self._pruned_at.get(project_id, -1e9) < self.PRUNE_EVERY_S:
            return
        marked = register.marked(project_id)
        if len(marked) <= self.PRUNE_ABOVE:
            return
        self._pruned_at[project_id] = now
        epoch = register.prune_epoch(project_id)
        rows = self.driver.query_rows(
            f"SELECT key_hash FROM {self._db}.events WHERE project_id = {{project:String}} "
            "AND key_hash IN {marked:Array(UInt64)} GROUP BY key_hash HAVING count() > 1",
            {"project": project_id, "marked": list(marked)})
        unmarked = register.prune(project_id, epoch, {int(r["key_hash"]) for r in rows})
        log.info("duplicate register pruned", extra={
            "project_id": project_id, "unmarked": unmarked, "marked": len(marked) - unmarked})

    def _indexed_paths(self, project_id: str, request: Any) -> frozenset[str] | None:
        """The nested filter paths of ``request`` that the attribute arrays answer exactly
        in this project (none stored opaque); None when no filter could use them."""
        filters = request.get("filters") if isinstance(request, Mapping) else None
        if not isinstance(filters, list) or not isinstance(project_id, str) or not project_id:
            return None
        paths = {p for p in map(attribute_path, filters) if p is not None}
        if not paths:
            return None
        opaque = {str(r["path"]) for r in self._rows(
            plan_opaque_paths(self.database, project_id, sorted(paths)))}
        return frozenset(paths - opaque)

    @remote
    def get_event(self, project_id: str, event_id: str) -> dict[str, Any]:
        """One event (newest version) of the project; NotFound when absent."""
        result = self.export(project_id, {"filters": [
            {"field": "event_id", "operator": "is", "value": event_id, "type": "id"}],
            "limit": 1})
        if not result["events"]:
            raise NotFound("event not found", event_id=event_id, project_id=project_id)
        event: dict[str, Any] = result["events"][0]
        return event

    @remote
    def session_tree(self, project_id: str, session_id: str) -> dict[str, Any]:
        """The session's events nested under their parents (NotFound if it has none)."""
        stmt = plan_session_events(self.database, project_id, session_id,
                                   method=self.dedup_method)
        return build_session_tree(session_id, self._rows(stmt))

    @remote
    def session_events(self, project_id: str, session_id: str) -> list[dict[str, Any]]:
        """The session's events, flat, in start_time order (empty if none)."""
        stmt = plan_session_events(self.database, project_id, session_id,
                                   method=self.dedup_method)
        return [row_to_event(row) for row in self._rows(stmt)]

    @remote
    def list_sessions(self, project_id: str, *, limit: int = 50, page: int = 1,
                      date_range: Mapping[str, Any] | None = None,
                      cursor: str | None = None, sort_by: str | None = None,
                      sort_order: str | None = None) -> dict[str, Any]:
        """``{"sessions": [...], "totalSessions": n, "next_cursor": c}``, newest first,
        from the rollups; cost and token sums are exact (over the newest version of each
        event). ``next_cursor`` (None after a short page) continues after this page when
        passed back as ``cursor`` (instead of ``page``). ``sort_by``/``sort_order``: another
        order (:func:`~apiary.store._session_queries.plan_session_list`)."""
        page_stmt, total_stmt = plan_session_list(self.database, project_id, limit=limit,
                                                  page=page, date_range=date_range,
                                                  cursor=cursor, sort_by=sort_by,
                                                  sort_order=sort_order)
        keys = self._rows(page_stmt)
        rows: list[dict[str, Any]] = []
        if keys:
            ids = [str(k["session_id"]) for k in keys]
            found = {str(r["session_id"]): r for r in self._rows(
                plan_session_rows(self.database, project_id, ids))}
            rows = [found[i] for i in ids if i in found]
            # Cost and token sums over the newest version of each event: the rollups'
            # plain sums would count a duplicate row or a re-sent event twice.
            sums_stmt = plan_session_sums(self.database, project_id, ids, self.dedup_method)
            exact = {str(s["session_id"]): s for s in self._rows(sums_stmt)}
            for row in rows:
                sums = exact.get(str(row["session_id"]))
                for column in ("total_cost", "prompt", "completion", "tokens"):
                    row[column] = sums[column] if sums is not None else 0
            total = int(keys[0]["total"])
        else:
            total = int(self._rows(total_stmt)[0]["n"])
        sessions = [shape_session(row) for row in rows]
        return {"sessions": sessions, "totalSessions": total,
                "next_cursor": session_page_cursor(keys, int(page_stmt.parameters["limit"]),
                                                   session_sort(sort_by, sort_order))}

    @remote
    def event_schema(self, project_id: str, *, event_type: str | None = None,
                     event_name: str | None = None) -> list[dict[str, Any]]:
        """Field paths seen in the project's JSON columns, with value type and counts."""
        stmt = plan_event_schema(self.database, project_id, event_type=event_type,
                                 event_name=event_name)
        return self._rows(stmt)

    @remote
    def event_details(self, project_id: str) -> list[dict[str, Any]]:
        """The project's event types and names, with event counts and first/last seen."""
        return self._rows(plan_event_details(self.database, project_id))

    @remote
    def count_events(self, project_id: str) -> int:
        """Exact number of distinct events of the project."""
        return int(self._rows(plan_count_events(self.database, project_id))[0]["n"])

    @remote
    def count_rows(self, project_id: str) -> int:
        """Stored rows of the project (versions and duplicates included); cheap."""
        return int(self._rows(plan_count_rows(self.database, project_id))[0]["n"])

    @remote
    def count_duplicate_rows(self, project_id: str) -> int:
        """Stored rows beyond one per event (before merges collapse them)."""
        return int(self._rows(plan_count_duplicate_rows(self.database, project_id))[0]["n"])

    # --- experiment runs (apiary.store._experiments) ---------------------------------------

    @remote
    def run_result_rows(self, project_id: str, run_id: str, session_ids: Sequence[str],
                        aggregate: str, filters: Sequence[Mapping[str, Any]] = ()
                        ) -> dict[str, list[dict[str, Any]]]:
        """What a run's result is computed from, in one call: ``metrics`` (per metric,
        event name and type: the aggregate and every value), ``sessions`` (with their
        datapoint ids) and ``event_details`` (distinct event names and types)."""
        args = (self.database, project_id, run_id, session_ids)
        within = sorted({str(r["session_id"]) for r in self._rows(
            plan_run_session_ids(self.database, project_id, run_id))} | set(session_ids))
        if not within:
            return {"metrics": [], "sessions": [], "event_details": []}
        method = self.dedup_method
        return {
            "metrics": self._rows(plan_run_metrics(*args, aggregate, filters=filters,
                                                   method=method, within=within)),
            "sessions": self._rows(plan_run_sessions(*args, filters=filters, method=method,
                                                     within=within)),
            "event_details": self._rows(plan_run_event_details(
                *args, filters=filters, method=method, within=within)),
        }

    @remote
    def run_events(self, project_id: str, run_id: str, session_ids: Sequence[str],
                   filters: Sequence[Mapping[str, Any]] = (), limit: int = 10_000
                   ) -> list[dict[str, Any]]:
        """A run's events (newest versions) matching ``filters``, in API shape."""
        stmt = plan_run_events(self.database, project_id, run_id, session_ids,
                               filters=filters, limit=limit, method=self.dedup_method)
        return [row_to_event(row) for row in self._rows(stmt)]

    # --- charts (apiary.store._charts) ----------------------------------------------------

    @remote
    def chart_data(self, project_id: str, request: Mapping[str, Any], *,
                   now_ms: float | None = None) -> dict[str, Any]:
        """A chart's series (``POST /v1/charts/query``): see
        :mod:`apiary.store._chart_spec` for the request and :func:`~apiary.store._charts.
        shape_chart` for the answer; bad requests are :class:`~apiary.errors.InvalidRequest`.
        ``now_ms`` anchors relative date ranges (default: now)."""
        spec = parse_chart_request(request, now_ms=now_ms)
        indexed = self._indexed_paths(project_id, {"filters": list(spec.filters)})

        def read(snapshot: DuplicateSnapshot) -> dict[str, Any]:
            plan = plan_chart(self.database, project_id, spec, marked=snapshot.hashes,
                              indexed_paths=indexed)
            return shape_chart(plan, self._rows(plan.statement))

        answer = self._vouched(project_id, read) if isinstance(project_id, str) else None
        self.chart_reads["final" if answer is None else "without_final"] += 1
        if answer is not None:
            return answer
        plan = plan_chart(self.database, project_id, spec, method=self.dedup_method,
                          indexed_paths=indexed)
        return shape_chart(plan, self._rows(plan.statement))

    @remote
    def query_rows(self, sql: str,
                   parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a read-only ``sql`` with bound ``parameters``, as the driver returns them
        (the writer's lookups that no other method covers)."""
        return self.driver.query_rows(sql, parameters)

    def close(self) -> None:
        self.driver.close()

    def _rows(self, stmt: Statement) -> list[dict[str, Any]]:
        return self.driver.query_rows(stmt.sql, stmt.parameters)
