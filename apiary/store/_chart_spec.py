"""What a chart asks for, validated: metric, aggregate, time buckets, dimension, range.

A chart request (the fields of a saved HoneyHive chart, ``POST /v1/charts/query``) is a
mapping with:

``metric``
    Event metrics (read from ``events``, versions collapsed):

    - ``event_count`` (aliases ``count``, ``events``, ``requests``, ``request_volume``) and
      ``error_count`` (``errors``): counts of matching events; ``error_rate``: the share of
      them (0..1) whose ``error`` is set.
    - ``duration`` (``latency``, milliseconds), ``cost``, ``prompt_tokens``,
      ``completion_tokens``, ``total_tokens`` (``tokens``): the column's value; 0 means
      unknown and is skipped (as in the filter language), so ``avg``/percentiles describe
      the events that have a value.
    - ``<json column>.<path>`` such as ``metrics.accuracy``, ``metadata.latency_ms``,
      ``feedback.rating``: a number read from the event's JSON (JSON numbers, numeric
      strings, booleans as 1/0); events without a numeric value there are skipped.

    Session metrics (read from the ``session_aggregates`` rollup, one value per session,
    bucketed by the session's first start): ``session_count`` (``sessions``),
    ``session_duration`` (ms, first start to last end; unknown is skipped),
    ``session_cost``, ``session_tokens``, ``session_events``, ``session_errors``. The
    rollup has no event fields, so these take no filters and only ``source`` as a
    dimension — except ``session_count``, which then counts the distinct sessions of the
    matching events (from ``events``).

    Names are matched case-insensitively, spaces and dashes read as ``_``
    (``"Error Rate"`` is ``error_rate``); JSON paths are case-sensitive.
``func``
    ``avg`` (``average``, ``mean``), ``sum``, ``min``, ``max``, ``count`` (values present),
    ``median`` or a percentile ``p50``, ``p90``, ``p95``, ``p99`` (any ``pNN``; exact,
    linear interpolation). Default: ``sum`` for cost and tokens, ``avg`` otherwise. Count
    metrics accept only ``count`` (or ``sum``, read as count); ``error_rate`` only
    ``avg``.
``bucketing``
    ``minute``, ``hour``, ``day`` (UTC, aligned to the epoch) or ``all`` (one bucket).
    Default ``day``.
``dateRange``
    On the event's ``start_time`` (a session's first start for session metrics):
    ``{"$gte": t, "$lte": t}`` (ISO-8601 or epoch ms; ``gte``/``lte`` also read) or
    ``{"relative": "7d"}`` (``<n>m|h|d|w`` back from now). Default, with time buckets: the
    last hour (minute), day (hour) or 30 days (day); with ``all``: no bound. At most
    :data:`MAX_BUCKETS` buckets.
``groupBy``
    None, ``model``, ``provider``, ``event_name``, ``event_type``, ``source``, or a
    string-valued JSON path (``metadata.user_id``, ``user_properties.plan``,
    ``config.temperature``, ...). Missing values form the group ``null``. The
    ``max_groups`` groups with the most events are returned (default 10, at most 100).
``query`` (or ``filters``)
    Filters in the export filter language (:mod:`apiary.store._filters`).

Anything else, or anything malformed, is :class:`~apiary.errors.InvalidRequest` naming the
field.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from apiary.errors import InvalidRequest
from apiary.store._experiments import aggregate_expression, check_filters
from apiary.store._filters import parse_time, split_field
from apiary.store._rows import JSON_COLUMNS

MAX_BUCKETS = 10_000
DEFAULT_MAX_GROUPS = 10
MAX_GROUPS = 100
MAX_FILTERS = 50

Kind = Literal["count", "errors", "error_rate", "value", "session_count", "session_value"]

#: Seconds per bucket; ``all`` is a single bucket.
BUCKETINGS: dict[str, int | None] = {"minute": 60, "hour": 3600, "day": 86_400, "all": None}
_DEFAULT_WINDOW_S = {"minute": 3600, "hour": 86_400, "day": 30 * 86_400}
_RELATIVE = re.compile(r"^\s*(\d{1,6})\s*([mhdw])\s*$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}

#: Dimensions that are columns of ``events``.
DIMENSION_COLUMNS = frozenset({"model", "provider", "event_name", "event_type", "source"})


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric of the catalog: its canonical name, how it aggregates, and the value
    expression (SQL over the source's columns) its aggregate reads."""

    name: str
    kind: Kind
    value_sql: str = ""
    default_func: str = "avg"
    columns: tuple[str, ...] = ()


def _column_value(column: str) -> Metric:
    default = "avg" if column == "duration" else "sum"
    return Metric(column, "value", f"nullIf(toFloat64({column}), 0)", default, (column,))


def _session_value(name: str, sql: str, default: str) -> Metric:
    return Metric(name, "session_value", sql, default)


METRICS: dict[str, Metric] = {
    "event_count": Metric("event_count", "count"),
    "error_count": Metric("error_count", "errors", columns=("error",)),
    "error_rate": Metric("error_rate", "error_rate", columns=("error",)),
    **{c: _column_value(c) for c in ("duration", "cost", "prompt_tokens",
                                     "completion_tokens", "total_tokens")},
    "session_count": Metric("session_count", "session_count", columns=("session_id",)),
    "session_duration": _session_value(
        "session_duration",
        "if(toUnixTimestamp64Micro(first_start) > 0 AND last_end > first_start, "
        "(toUnixTimestamp64Micro(last_end) - toUnixTimestamp64Micro(first_start)) / 1000.0, "
        "NULL)", "avg"),
    "session_cost": _session_value("session_cost", "toFloat64(total_cost)", "sum"),
    "session_tokens": _session_value("session_tokens", "toFloat64(tokens)", "sum"),
    "session_events": _session_value("session_events", "toFloat64(events)", "avg"),
    "session_errors": _session_value("session_errors", "toFloat64(errors)", "avg"),
}
ALIASES = {
    "count": "event_count", "events": "event_count", "requests": "event_count",
    "request_volume": "event_count", "number_of_events": "event_count",
    "errors": "error_count", "latency": "duration", "tokens": "total_tokens",
    "sessions": "session_count", "number_of_sessions": "session_count",
}
_COUNT_FUNCS = frozenset({"count", "sum"})
_RATE_FUNCS = frozenset({"avg", "average", "mean"})


@dataclass(frozen=True, slots=True)
class ChartSpec:
    """A validated chart request. Times are epoch microseconds (``None``: unbounded);
    ``json_path`` is set for a metric read from a JSON column."""

    metric: Metric
    func: str
    aggregate_sql: str
    bucketing: str
    step_ms: int | None
    group_by: str | None
    filters: tuple[Mapping[str, Any], ...]
    gte_us: int | None
    lte_us: int | None
    max_groups: int
    json_path: tuple[str, tuple[str, ...]] | None = None

    def date_range(self) -> dict[str, float] | None:
        """The resolved range as ``{"$gte", "$lte"}`` epoch milliseconds (None: unbounded)."""
        out = {}
        if self.gte_us is not None:
            out["$gte"] = self.gte_us / 1000.0
        if self.lte_us is not None:
            out["$lte"] = self.lte_us / 1000.0
        return out or None


def _path(name: str, what: str) -> tuple[str, tuple[str, ...]]:
    """``split_field`` with errors naming the request field ``what``."""
    try:
        return split_field(name)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{what}: {exc.message}", field=what) from None


def _canonical(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def resolve_metric(raw: Any) -> tuple[Metric, tuple[str, tuple[str, ...]] | None]:
    """The catalog metric ``raw`` names, or a JSON-path metric; InvalidRequest otherwise."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidRequest("metric is required: a metric name such as event_count, "
                             "duration, cost or metrics.<name>", field="metric")
    if "." in raw:
        column, path = _path(raw.strip(), "metric")
        if column not in JSON_COLUMNS or not path:
            raise InvalidRequest(f"metric {raw[:80]!r}: a nested metric must be a path into "
                                 "one of " + ", ".join(JSON_COLUMNS), field="metric")
        return Metric(raw.strip(), "value", "", "avg", (column,)), (column, path)
    name = _canonical(raw)
    name = ALIASES.get(name, name)
    if name not in METRICS:
        raise InvalidRequest(
            f"unknown metric {raw[:80]!r}; use one of {', '.join(sorted(METRICS))}, or a "
            "numeric JSON path such as metrics.<name> or metadata.<key>", field="metric")
    return METRICS[name], None


def _func(metric: Metric, raw: Any) -> tuple[str, str]:
    """(canonical func name, aggregate SQL) for ``metric``."""
    if raw is not None and not isinstance(raw, str):
        raise InvalidRequest("func must be a string", field="func")
    name = _canonical(raw) if raw else ""
    if metric.kind in ("count", "errors", "session_count"):
        if name and name not in _COUNT_FUNCS:
            raise InvalidRequest(f"metric {metric.name} is a count: func must be count",
                                 field="func")
        return "count", "count"
    if metric.kind == "error_rate":
        if name and name not in _RATE_FUNCS:
            raise InvalidRequest("metric error_rate is a share of events: func must be avg",
                                 field="func")
        return "avg", "avg"
    name = name or metric.default_func
    name = {"average": "avg", "mean": "avg"}.get(name, name)
    try:
        return name, aggregate_expression(name)
    except InvalidRequest:
        raise InvalidRequest(f"unknown func {str(raw)[:40]!r}; use avg, sum, min, max, count, "
                             "median or a percentile such as p50, p90, p95, p99",
                             field="func") from None


def _group_by(raw: Any, metric: Metric) -> str | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if not isinstance(raw, str):
        raise InvalidRequest("groupBy must be a string", field="groupBy")
    name = raw.strip()
    if "." in name:
        column, path = _path(name, "groupBy")
        if column not in JSON_COLUMNS or not path:
            raise InvalidRequest(f"groupBy {name[:80]!r}: use a column ("
                                 + ", ".join(sorted(DIMENSION_COLUMNS))
                                 + ") or a JSON path such as metadata.user_id",
                                 field="groupBy")
    elif name not in DIMENSION_COLUMNS:
        raise InvalidRequest(f"unknown groupBy {name[:80]!r}; use "
                             + ", ".join(sorted(DIMENSION_COLUMNS))
                             + " or a JSON path such as metadata.user_id", field="groupBy")
    if metric.kind == "session_value" and name != "source":
        raise InvalidRequest(f"metric {metric.name} comes from the session rollups: the "
                             "only dimension is source", field="groupBy")
    return name


def _relative(text: str) -> int:
    match = _RELATIVE.match(text)
    if not match:
        raise InvalidRequest("dateRange.relative must look like 30m, 24h, 7d or 2w",
                             field="dateRange")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def _bound(range_: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        if range_.get(key) is not None:
            return parse_time(range_[key], what=f"dateRange.{keys[0]}")
    return None


def resolve_range(raw: Any, bucketing: str, now_ms: float) -> tuple[int | None, int | None]:
    """(gte, lte) epoch µs of ``raw`` (see module docstring), defaults applied."""
    now_us = round(now_ms * 1000)
    window = _DEFAULT_WINDOW_S.get(bucketing)
    if raw is None:
        return (None, None) if window is None else (now_us - window * 1_000_000, now_us)
    if not isinstance(raw, Mapping):
        raise InvalidRequest('dateRange must be {"$gte": ..., "$lte": ...} or '
                             '{"relative": "7d"}', field="dateRange")
    known = {"$gte", "$lte", "gte", "lte", "relative"}
    unknown = sorted(str(k)[:20] for k in raw if k not in known)
    if unknown:
        raise InvalidRequest(f"unknown dateRange key(s) {', '.join(unknown)}; use $gte/$lte "
                             "or relative", field="dateRange")
    if raw.get("relative") is not None:
        if not isinstance(raw["relative"], str):
            raise InvalidRequest("dateRange.relative must be a string such as 7d",
                                 field="dateRange")
        return now_us - _relative(raw["relative"]) * 1_000_000, now_us
    gte, lte = _bound(raw, "$gte", "gte"), _bound(raw, "$lte", "lte")
    if window is not None:  # time buckets need both ends
        if lte is None:
            lte = max(now_us, gte or 0)
        if gte is None:
            gte = max(0, lte - window * 1_000_000)
    if gte is not None and lte is not None and lte < gte:
        raise InvalidRequest("dateRange: $lte is before $gte", field="dateRange")
    return gte, lte


def _first_last(gte_us: int | None, lte_us: int | None, step_ms: int) -> tuple[int, int]:
    assert gte_us is not None
    assert lte_us is not None
    return ((gte_us // 1000) // step_ms * step_ms, (lte_us // 1000) // step_ms * step_ms)


def bucket_starts(spec: ChartSpec) -> list[int | None]:
    """The start (epoch ms) of every bucket of ``spec``'s range; ``[gte or None]`` for
    ``all``."""
    if spec.step_ms is None:
        return [None if spec.gte_us is None else spec.gte_us // 1000]
    first, last = _first_last(spec.gte_us, spec.lte_us, spec.step_ms)
    return list(range(first, last + 1, spec.step_ms))


def _max_groups(raw: Any) -> int:
    if raw is None:
        return DEFAULT_MAX_GROUPS
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_GROUPS:
        raise InvalidRequest(f"max_groups must be an integer from 1 to {MAX_GROUPS}",
                             field="max_groups")
    return raw


def _filters(request: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    raw = request.get("query")
    if raw is None:
        raw = request.get("filters")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidRequest("query must be a list of filters", field="query")
    filters = tuple(f for f in raw if f is not None)
    if len(filters) > MAX_FILTERS:
        raise InvalidRequest(f"at most {MAX_FILTERS} filters", field="query")
    check_filters(filters)
    return filters


def parse_chart_request(request: Mapping[str, Any], *, now_ms: float | None = None
                        ) -> ChartSpec:
    """Validate a chart request (module docstring) into a :class:`ChartSpec`.

    ``now_ms`` (default: the current time) anchors relative and default date ranges.
    """
    if not isinstance(request, Mapping):
        raise InvalidRequest("the chart request must be an object")
    metric, json_path = resolve_metric(request.get("metric"))
    func, aggregate = _func(metric, request.get("func"))
    bucketing = request.get("bucketing") or "day"
    if not isinstance(bucketing, str) or bucketing.strip().lower() not in BUCKETINGS:
        raise InvalidRequest("bucketing must be one of " + ", ".join(BUCKETINGS),
                             field="bucketing")
    bucketing = bucketing.strip().lower()
    group_by = _group_by(request.get("groupBy"), metric)
    filters = _filters(request)
    if filters and metric.kind == "session_value":
        raise InvalidRequest(f"metric {metric.name} comes from the session rollups, which "
                             "take no filters", field="query")
    now = time.time() * 1000.0 if now_ms is None else now_ms
    gte, lte = resolve_range(request.get("dateRange"), bucketing, now)
    step_s = BUCKETINGS[bucketing]
    if step_s is not None:
        first, last = _first_last(gte, lte, step_s * 1000)
        buckets = (last - first) // (step_s * 1000) + 1
        if buckets > MAX_BUCKETS:
            raise InvalidRequest(f"the dateRange holds {buckets} {bucketing} buckets, more "
                                 f"than {MAX_BUCKETS}: narrow it or bucket coarser",
                                 field="dateRange", limit=MAX_BUCKETS)
    return ChartSpec(
        metric=metric, func=func, aggregate_sql=aggregate, bucketing=bucketing,
        step_ms=None if step_s is None else step_s * 1000, group_by=group_by,
        filters=filters, gte_us=gte, lte_us=lte, max_groups=_max_groups(
            request.get("max_groups")), json_path=json_path,
    )


__all__ = ["ALIASES", "BUCKETINGS", "DIMENSION_COLUMNS", "MAX_BUCKETS", "MAX_GROUPS",
           "METRICS", "ChartSpec", "Metric", "bucket_starts", "parse_chart_request",
           "resolve_metric", "resolve_range"]
