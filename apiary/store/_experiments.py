"""Read queries for experiment runs: a run's metric values, sessions and events.

A run's events are those of the project whose ``metadata.run_id`` is the run's id (every
span ``evaluate()`` exports carries it, and so does each datapoint's session event), plus
the events of the sessions the run names (``session_ids``: the ``event_ids`` the SDK sends
when it closes the run). Scores are the keys of each event's ``metrics`` object.

Metric values are read as numbers when they are JSON numbers, booleans (1/0) or numeric
strings; other values (labels, explanations) are returned as raw JSON with ``num`` NULL.
Aggregates are computed by ClickHouse over the numeric values of each (metric, event
name, event type): :data:`AGGREGATES` name the functions; ``pNN`` is the NN-th percentile
with linear interpolation (``quantileExactInclusive``, numpy's default), ``median`` is
``p50``. Versions are collapsed (``FINAL``) before anything is read, within the run's
sessions only (found first through the ``idx_run_id`` skip index, migration 0006).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from apiary.errors import InvalidRequest
from apiary.store._filters import Params, compile_filter
from apiary.store._queries import (
    DedupMethod,
    Statement,
    _db,
    _require_project,
    deduplicated_events,
)
from apiary.store._rows import API_FIELDS

AGGREGATES = {"average": "avg", "avg": "avg", "mean": "avg", "sum": "sum", "min": "min",
              "max": "max", "count": "count", "median": "quantileExactInclusive(0.5)"}
_PERCENTILE = re.compile(r"^(?:p|percentile_?)(\d{1,2}(?:\.\d{1,3})?|100)$")
MAX_RUN_EVENTS = 10_000
_MAX_FILTERS = 50

_NUM = ("multiIf(raw IN ('true', 'false'), toFloat64(raw = 'true'), startsWith(raw, '\"'), "
        "toFloat64OrNull(JSONExtractString(concat('[', raw, ']'), 1)), toFloat64OrNull(raw))")


def aggregate_expression(name: str) -> str:
    """The ClickHouse aggregate for an ``aggregate_function`` name, or InvalidRequest."""
    key = name.strip().lower()
    if key in AGGREGATES:
        return AGGREGATES[key]
    match = _PERCENTILE.match(key)
    if match and 0 <= float(match.group(1)) <= 100:
        return f"quantileExactInclusive({float(match.group(1)) / 100!r})"
    raise InvalidRequest(
        f"unknown aggregate_function {name[:40]!r}; use average, median, min, max, sum, "
        "count or a percentile such as p50, p90, p95, p99", field="aggregate_function",
    )


def check_filters(filters: Sequence[Mapping[str, Any]]) -> None:
    """InvalidRequest if any filter is not one of the export filter language."""
    if len(filters) > _MAX_FILTERS:
        raise InvalidRequest(f"at most {_MAX_FILTERS} filters", field="filters")
    params = Params()
    for raw in filters:
        compile_filter(raw, params)


def plan_run_session_ids(database: str, project_id: str, run_id: str) -> Statement:
    """The sessions holding an event tagged with the run (the run_id skip index; no FINAL:
    a superset, as any version counts), to resolve once for a result's statements."""
    params = Params()
    return Statement(
        f"SELECT DISTINCT session_id FROM {_db(database)}.events "
        f"WHERE project_id = {params.bind(_require_project(project_id), 'String')} AND "
        f"JSONExtractString(metadata, 'run_id') = {params.bind(run_id, 'String')}",
        params.values)


def _run_source(database: str, params: Params, project_id: str, run_id: str,
                session_ids: Sequence[str], filters: Sequence[Mapping[str, Any]],
                columns: set[str], method: DedupMethod,
                within: Sequence[str] | None = None) -> str:
    """``SELECT <columns> FROM`` the run's events (newest versions) matching ``filters``;
    ``within``, when given, is every session of the run (:func:`plan_run_session_ids`
    and ``session_ids``), so the statement need not look them up itself."""
    project_id = _require_project(project_id)
    if len(filters) > _MAX_FILTERS:
        raise InvalidRequest(f"at most {_MAX_FILTERS} filters", field="filters")
    compiled = [compile_filter(f, params) for f in filters]
    tagged = f"JSONExtractString(metadata, 'run_id') = {params.bind(run_id, 'String')}"
    # The run's sessions first (cheap: no FINAL, two columns, the run_id skip index), so
    # that versions are collapsed only within them (the primary key starts with the
    # project and the session).
    named = (f"session_id IN {params.bind(sorted(set(session_ids)), 'Array(String)')}"
             if session_ids else None)
    member = f"({tagged} OR {named})" if named else tagged
    if within is not None:  # bench/query: 3 lookups of the sessions became 1 (run result)
        sessions = f"session_id IN {params.bind(sorted(set(within)), 'Array(String)')}"
    else:
        sessions = (f"session_id IN (SELECT session_id FROM {_db(database)}.events "
                    f"WHERE project_id = {params.bind(project_id, 'String')} AND {tagged})")
        sessions = f"({sessions} OR {named})" if named else sessions
    conditions = [member, *(c.sql for c in compiled)]
    needed = columns | {"metadata", "session_id"} | {
        f["field"].split(".")[0] for f in filters if isinstance(f.get("field"), str)}
    source = deduplicated_events(database, params, project_id, [sessions], needed, method)
    select = ", ".join(sorted(needed))
    return f"SELECT {select} FROM {source} AND " + " AND ".join(conditions)


def plan_run_metrics(database: str, project_id: str, run_id: str, session_ids: Sequence[str],
                     aggregate: str, *, filters: Sequence[Mapping[str, Any]] = (),
                     method: DedupMethod = "final",
                     within: Sequence[str] | None = None) -> Statement:
    """Per (metric, event name, event type): the aggregate and every value with its
    session, datapoint and event (``points``: tuples ``(session_id, datapoint_id,
    event_id, raw JSON, number or NULL)``)."""
    function = aggregate_expression(aggregate)
    params = Params()
    inner = _run_source(database, params, project_id, run_id, session_ids, filters,
                        {"event_id", "event_name", "event_type", "metrics"}, method, within)
    sql = (
        "SELECT metric_name, event_name, event_type, "
        f"{function}(num) AS aggregate, count(num) AS numeric_count, "
        "groupArray(tuple(session_id, datapoint_id, event_id, raw, num)) AS points "
        "FROM (SELECT session_id, event_id, event_name, event_type, "
        "JSONExtractString(metadata, 'datapoint_id') AS datapoint_id, "
        f"kv.1 AS metric_name, kv.2 AS raw, {_NUM} AS num "
        f"FROM ({inner}) ARRAY JOIN JSONExtractKeysAndValuesRaw(metrics) AS kv) "
        "GROUP BY metric_name, event_name, event_type "
        "ORDER BY metric_name, event_name, event_type"
    )
    return Statement(sql, params.values)


def plan_run_sessions(database: str, project_id: str, run_id: str, session_ids: Sequence[str],
                      *, filters: Sequence[Mapping[str, Any]] = (),
                      method: DedupMethod = "final",
                      within: Sequence[str] | None = None) -> Statement:
    """The run's sessions in start order, with their datapoint (and dataset) ids and
    event/error counts."""
    params = Params()
    inner = _run_source(database, params, project_id, run_id, session_ids, filters,
                        {"event_id", "start_time", "error"}, method, within)
    dp = "JSONExtractString(metadata, 'datapoint_id')"
    ds = "JSONExtractString(metadata, 'dataset_id')"
    sql = (
        f"SELECT session_id, anyIf({dp}, {dp} != '') AS datapoint_id, "
        f"anyIf({ds}, {ds} != '') AS dataset_id, count() AS events, "
        "countIf(ifNull(error, '') != '') AS errors, min(start_time) AS first_start "
        f"FROM ({inner}) GROUP BY session_id ORDER BY first_start, session_id"
    )
    return Statement(sql, params.values)


def plan_run_event_details(database: str, project_id: str, run_id: str,
                           session_ids: Sequence[str], *,
                           filters: Sequence[Mapping[str, Any]] = (),
                           method: DedupMethod = "final",
                           within: Sequence[str] | None = None) -> Statement:
    """The distinct (event name, event type) pairs of the run's events."""
    params = Params()
    inner = _run_source(database, params, project_id, run_id, session_ids, filters,
                        {"event_name", "event_type"}, method, within)
    return Statement(f"SELECT DISTINCT event_name, event_type FROM ({inner}) "
                     "ORDER BY event_type, event_name", params.values)


def plan_run_events(database: str, project_id: str, run_id: str, session_ids: Sequence[str],
                    *, filters: Sequence[Mapping[str, Any]] = (), limit: int = MAX_RUN_EVENTS,
                    method: DedupMethod = "final") -> Statement:
    """The run's events (API columns) matching ``filters``, sessions first, then by time."""
    params = Params()
    inner = _run_source(database, params, project_id, run_id, session_ids, filters,
                        set(API_FIELDS), method)
    sql = (f"SELECT * FROM ({inner}) ORDER BY event_type = 'session' DESC, start_time, "
           "event_id LIMIT {limit:UInt32}")
    return Statement(sql, {**params.values, "limit": min(limit, MAX_RUN_EVENTS)})


__all__ = ["AGGREGATES", "MAX_RUN_EVENTS", "aggregate_expression", "check_filters",
           "plan_run_event_details", "plan_run_events", "plan_run_metrics",
           "plan_run_session_ids", "plan_run_sessions"]
