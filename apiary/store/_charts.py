"""Chart queries: one statement per chart request, and the series it answers.

:func:`plan_chart` turns a validated :class:`~apiary.store._chart_spec.ChartSpec` into SQL
over the table that answers it, always scoped to one project, values only as bound
parameters:

- ``project_event_details`` (the per-name rollup) for ``event_count`` over all time
  (``bucketing: all``, no date range, no filters), grouped by nothing, ``event_name`` or
  ``event_type``: no scan of ``events``. Its counts are ``uniq`` states, exact up to 65,536
  events per name and within ~1% beyond (``exact`` is False in the answer).
- ``session_aggregates`` (the per-session rollup) for session metrics without filters
  (grouped by nothing or the session's ``source``): one row per session, bucketed by its
  first start.
- ``events FINAL`` (newest version of each event) for everything else: exact. Conditions
  on event and session ids apply before versions are collapsed, every other one after
  (as in exports), so an old version never counts. On the embedded store, whose register
  knows the keys stored twice, the same without FINAL (``marked``).

Per (bucket, group) the statement returns the aggregate and the number of values behind
it; groups are ranked by their number of events over the whole range and only the first
``max_groups`` are returned (``truncated`` says others exist). :func:`shape_chart` lays the
rows out as one dense series per group over every bucket of the range: buckets without
data hold 0 for counts and sums, ``null`` for other aggregates.
"""

from __future__ import annotations

import math
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apiary.store._chart_spec import ChartSpec, bucket_starts
from apiary.store._filters import (
    CompiledFilter,
    Params,
    attribute_path,
    compile_filter,
    split_field,
)
from apiary.store._queries import (
    DedupMethod,
    Statement,
    _db,
    _require_project,
    deduplicated_events,
)

#: Longest group label returned (longer values are cut).
MAX_GROUP_CHARS = 256
_NUMERIC = ("multiIf(_raw IN ('true', 'false'), toFloat64(_raw = 'true'), "
            "startsWith(_raw, '\"'), toFloat64OrNull(JSONExtractString(_raw)), "
            "toFloat64OrNull(_raw))")
_SESSIONS = """
    session_id,
    minIfMerge(start_time) AS first_start,
    maxIfMerge(end_time) AS last_end,
    argMaxIfMerge(source) AS session_source,
    sum(cost) AS total_cost,
    sum(total_tokens) AS tokens,
    uniqExactMerge(event_count) AS events,
    uniqExactIfMerge(error_count) AS errors
"""


@dataclass(frozen=True, slots=True)
class ChartPlan:
    """The statement of one chart request, the table it reads and how to shape it."""

    statement: Statement
    spec: ChartSpec
    source: str

    @property
    def exact(self) -> bool:
        return self.source != "project_event_details"


def _json_text(column: str, path: tuple[str, ...], params: Params) -> str:
    keys = ", ".join(params.bind(key, "String") for key in path)
    return f"JSONExtractRaw({column}, {keys})"


def _group_sql(group_by: str | None, *, session_rollup: bool) -> str:
    if group_by is None:
        return "''"
    if session_rollup:
        return "session_source"
    if "." not in group_by:
        return group_by
    # The path is extracted once, as _graw (see _events_inner): spelling the extraction
    # out at each use parsed the JSON each time (bench/query: 2.5x slower).
    text = "if(startsWith(_graw, '\"'), JSONExtractString(_graw), if(_graw = 'null', '', _graw))"
    return f"substring({text}, 1, {MAX_GROUP_CHARS})"


def _bucket_sql(spec: ChartSpec, time_column: str, params: Params) -> str:
    if spec.step_ms is None:
        return "toInt64(0)"
    step = params.bind(spec.step_ms, "Int64")
    return f"intDiv(toInt64(toUnixTimestamp64Milli({time_column})), {step}) * {step}"


def _range_sql(spec: ChartSpec, time_column: str, params: Params) -> list[str]:
    out = []
    if spec.gte_us is not None:
        out.append(f"{time_column} >= fromUnixTimestamp64Micro("
                   f"{params.bind(spec.gte_us, 'Int64')}, 'UTC')")
    if spec.lte_us is not None:
        out.append(f"{time_column} <= fromUnixTimestamp64Micro("
                   f"{params.bind(spec.lte_us, 'Int64')}, 'UTC')")
    return out


def _aggregates(spec: ChartSpec) -> tuple[str, str]:
    """(value, count) aggregate SQL over the inner columns ``v``, ``e``, ``session_id``."""
    kind = spec.metric.kind
    if kind == "count":
        return "toFloat64(count())", "count()"
    if kind == "errors":
        return "toFloat64(countIf(e))", "count()"
    if kind == "error_rate":
        return "countIf(e) / count()", "count()"
    if kind == "session_count":
        return "toFloat64(uniqExact(session_id))", "count()"
    return f"toFloat64({spec.aggregate_sql}(v))", "count(v)"


def _ranked(grouped: str, params: Params, spec: ChartSpec) -> str:
    """Keep the ``max_groups`` groups with the most rows; ``groups`` counts them all."""
    if spec.group_by is None:
        return (f"SELECT bucket, grp, value, n, toUInt64(1) AS rk, toUInt64(1) AS groups "
                f"FROM ({grouped})")
    limit = params.bind(spec.max_groups, "UInt32")
    return (
        "SELECT bucket, grp, value, n, rk, groups FROM ("
        "SELECT bucket, grp, value, n, rk, max(rk) OVER () AS groups FROM ("
        "SELECT bucket, grp, value, n, dense_rank() OVER (ORDER BY weight DESC, grp) AS rk "
        f"FROM ({grouped}))) WHERE rk <= {limit}"
    )


def _events_inner(database: str, project_id: str, spec: ChartSpec, params: Params,
                  method: DedupMethod, marked: Sequence[int] | None,
                  indexed_paths: Container[str] | None) -> str:
    compiled: list[CompiledFilter] = [compile_filter(f, params, indexed_paths)
                                      for f in spec.filters]
    columns = {"start_time", "session_id", *spec.metric.columns}
    columns |= {split_field(f.get("field"))[0] for f in spec.filters}
    if indexed_paths is not None and any(attribute_path(f) in indexed_paths
                                         for f in spec.filters):
        columns |= {"attr_keys", "attr_values", "attr_hashes"}
    if spec.group_by is not None:
        columns.add(spec.group_by.split(".")[0])
    source = deduplicated_events(database, params, project_id,
                                 [c.sql for c in compiled if c.key_only], columns, method,
                                 marked=marked)
    late = [c.sql for c in compiled if not c.key_only] + _range_sql(spec, "start_time",
                                                                     params)
    where = "".join(f" AND {cond}" for cond in late)
    selects = [f"{_bucket_sql(spec, 'start_time', params)} AS bucket"]
    if spec.group_by is not None and "." in spec.group_by:
        selects.append(f"{_json_text(*split_field(spec.group_by), params)} AS _graw")
    selects += [f"{_group_sql(spec.group_by, session_rollup=False)} AS grp",
                "session_id"]
    if spec.json_path is not None:
        column, path = spec.json_path
        selects.append(f"{_json_text(column, path, params)} AS _raw")
        selects.append(f"if(isFinite(ifNull({_NUMERIC}, nan)), {_NUMERIC}, NULL) AS v")
    elif spec.metric.kind == "value":
        selects.append(f"{spec.metric.value_sql} AS v")
    if spec.metric.kind in ("errors", "error_rate"):
        selects.append("ifNull(error, '') != '' AS e")
    return f"SELECT {', '.join(selects)} FROM {source}{where}"


def _sessions_inner(database: str, project_id: str, spec: ChartSpec,
                    params: Params) -> str:
    having = _range_sql(spec, "first_start", params)
    having_sql = f" HAVING {' AND '.join(having)}" if having else ""
    rollup = (f"SELECT {_SESSIONS} FROM {_db(database)}.session_aggregates "
              f"WHERE project_id = {params.bind(project_id, 'String')} "
              f"GROUP BY session_id{having_sql}")
    value = spec.metric.value_sql or "1"
    return (f"SELECT {_bucket_sql(spec, 'first_start', params)} AS bucket, "
            f"{_group_sql(spec.group_by, session_rollup=True)} AS grp, "
            f"session_id, {value} AS v FROM ({rollup})")


def _uses_session_rollup(spec: ChartSpec) -> bool:
    if spec.metric.kind == "session_value":
        return True
    return (spec.metric.kind == "session_count" and not spec.filters
            and spec.group_by in (None, "source"))


def _uses_name_rollup(spec: ChartSpec) -> bool:
    return (spec.metric.kind == "count" and spec.step_ms is None and not spec.filters
            and spec.gte_us is None and spec.lte_us is None
            and spec.group_by in (None, "event_name", "event_type"))


def plan_chart(database: str, project_id: str, spec: ChartSpec, *,
               method: DedupMethod = "final", marked: Sequence[int] | None = None,
               indexed_paths: Container[str] | None = None) -> ChartPlan:
    """The statement answering ``spec`` for one project (module docstring); ``marked``:
    read ``events`` without FINAL (:func:`~apiary.store._queries.deduplicated_events`);
    ``indexed_paths``: nested filter paths the attribute arrays answer exactly
    (:func:`~apiary.store._queries.plan_opaque_paths`), as in exports."""
    project_id = _require_project(project_id)
    params = Params()
    if _uses_name_rollup(spec):
        grp = spec.group_by or "''"
        grouped = (f"SELECT toInt64(0) AS bucket, {grp} AS grp, "
                   "toFloat64(uniqMerge(event_count)) AS value, toUInt64(value) AS n, "
                   f"value AS weight FROM {_db(database)}.project_event_details "
                   f"WHERE project_id = {params.bind(project_id, 'String')} GROUP BY grp")
        sql = _ranked(grouped, params, spec)
        return ChartPlan(Statement(f"{sql} ORDER BY value DESC, grp", params.values), spec,
                         "project_event_details")
    if _uses_session_rollup(spec):
        inner, source = _sessions_inner(database, project_id, spec, params), \
            "session_aggregates"
        value = ("toFloat64(count())" if spec.metric.kind == "session_count"
                 else f"toFloat64({spec.aggregate_sql}(v))")
        count = "count()" if spec.metric.kind == "session_count" else "count(v)"
    else:
        inner, source = _events_inner(database, project_id, spec, params, method,
                                       marked, indexed_paths), "events"
        value, count = _aggregates(spec)
    grouped = (f"SELECT bucket, grp, {value} AS value, {count} AS n, "
               "sum(count()) OVER (PARTITION BY grp) AS weight "
               f"FROM ({inner}) GROUP BY bucket, grp")
    sql = f"{_ranked(grouped, params, spec)} ORDER BY bucket, grp"
    return ChartPlan(Statement(sql, params.values), spec, source)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def shape_chart(plan: ChartPlan, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The chart answer: the request as resolved, ``buckets`` (epoch ms of each bucket's
    start; ``[range start or null]`` for ``all``) and ``series`` (per group, ordered by
    its number of events: ``values`` and ``counts`` aligned with ``buckets``)."""
    spec = plan.spec
    buckets = bucket_starts(spec)
    index = {b: i for i, b in enumerate(buckets)}
    zero: float | None = 0.0 if spec.func in ("count", "sum") or spec.metric.kind in (
        "count", "errors", "session_count") else None
    series: dict[str, dict[str, Any]] = {}
    ranks: dict[str, int] = {}
    groups = 0
    for row in rows:
        groups = max(groups, int(row["groups"]))
        position = 0 if spec.step_ms is None else index.get(int(row["bucket"]))
        if position is None:
            continue
        label = str(row["grp"])
        entry = series.get(label)
        if entry is None:
            ranks[label] = int(row["rk"])
            entry = series[label] = {
                "group": None if spec.group_by is None or label == "" else label,
                "values": [zero] * len(buckets), "counts": [0] * len(buckets)}
        value = _number(row["value"])
        entry["values"][position] = zero if value is None else value
        entry["counts"][position] = int(row["n"])
    return {
        "metric": spec.metric.name, "func": spec.func, "bucketing": spec.bucketing,
        "groupBy": spec.group_by, "dateRange": spec.date_range(), "source": plan.source,
        "exact": plan.exact, "buckets": buckets,
        "series": [series[label] for label in sorted(series, key=ranks.__getitem__)],
        "truncated": groups > len(series) and spec.group_by is not None,
    }


__all__ = ["ChartPlan", "plan_chart", "shape_chart"]
