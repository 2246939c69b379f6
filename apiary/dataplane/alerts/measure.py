"""Measuring an alert rule: its value over a window, from ClickHouse's aggregates.

Each measurement is one chart query (:meth:`~apiary.store.EventStore.chart_data`, the query
path of ``POST /v1/charts/query``: one statement over ``events`` with versions collapsed,
the rule's ``filters`` compiled by the export filter compiler, one ``all`` bucket over the
window ``[end - window_s, end)`` on the events' ``start_time``) through a
:class:`~apiary.store.StoreClient` (the chDB owner actor, or a ClickHouse server).

What each ``field`` reads (``docs/alerts.md``, "Evaluation"):

- ``event_count``: the number of matching events; ``error_rate``: the share of them with an
  error; ``latency_p50|p95|p99``: that percentile of ``duration`` (milliseconds; events
  without a duration are skipped); ``cost``, ``tokens``: the sum of ``cost`` and of
  ``total_tokens``;
- ``metrics.<name>`` / ``feedback.<name>``: the mean of the numeric values at that path
  (``mean``), or, for ``share_true``, the mean of the booleans read as 1/0 — the share of
  ``true``.

**No data.** A window without matching events measures 0 for the counts and sums
(``event_count``, ``cost``, ``tokens``) and *no value* (None) for the rates, percentiles and
means: a rule with no value makes no transition.

**Drift.** The same measurement over the ``comparison_window_s`` just before the window, and
the relative change in the rule's ``direction`` (``up`` ``(cur - prev) / |prev|``, ``down``
``(prev - cur) / |prev|``, ``either`` ``|cur - prev| / |prev|``); no value when either side
has none or the previous value is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apiary.dataplane.alerts.rules import AlertRule
from apiary.store import StoreClient

#: Fields whose empty window measures 0 rather than no value.
ZERO_WHEN_EMPTY = frozenset({"event_count", "cost", "tokens"})
_CHART_METRIC: dict[str, tuple[str, str]] = {
    "event_count": ("event_count", "count"),
    "error_rate": ("error_rate", "avg"),
    "latency_p50": ("duration", "p50"),
    "latency_p95": ("duration", "p95"),
    "latency_p99": ("duration", "p99"),
    "cost": ("cost", "sum"),
    "tokens": ("total_tokens", "sum"),
}


@dataclass(frozen=True, slots=True)
class Measurement:
    """A rule's value at one window end; for drift also both sides it compares."""

    value: float | None
    current: float | None
    previous: float | None = None


def chart_request(rule: AlertRule, start_s: int, end_s: int) -> dict[str, Any]:
    """The chart request measuring ``rule`` over ``[start_s, end_s)``."""
    metric, func = _CHART_METRIC.get(rule.field, (rule.field, "avg"))
    return {"metric": metric, "func": func, "bucketing": "all",
            "dateRange": {"$gte": start_s * 1000, "$lte": end_s * 1000 - 1},
            "filters": [dict(f) for f in rule.filters]}


async def window_value(store: StoreClient, rule: AlertRule, start_s: int,
                       end_s: int) -> float | None:
    """``rule``'s field over ``[start_s, end_s)`` (module docstring for no data)."""
    answer = await store.chart_data(rule.project_id, chart_request(rule, start_s, end_s),
                                    now_ms=end_s * 1000.0)
    series = answer.get("series") or []
    if not series or not series[0]["counts"] or not series[0]["counts"][0]:
        return 0.0 if rule.field in ZERO_WHEN_EMPTY else None
    value = series[0]["values"][0]
    return None if value is None else float(value)


def relative_change(current: float | None, previous: float | None,
                    direction: str) -> float | None:
    """The drift value (module docstring); None without both sides or with previous 0."""
    if current is None or previous is None or previous == 0:
        return None
    if direction == "up":
        return (current - previous) / abs(previous)
    if direction == "down":
        return (previous - current) / abs(previous)
    return abs(current - previous) / abs(previous)


async def measure(store: StoreClient, rule: AlertRule, end_s: int) -> Measurement:
    """``rule``'s value over the window ending at ``end_s`` (unix seconds). Raises what the
    store raises (:class:`~apiary.errors.StoreError`; a filter the store refuses is
    :class:`~apiary.errors.InvalidRequest`)."""
    current = await window_value(store, rule, end_s - rule.window_s, end_s)
    if rule.type != "drift":
        return Measurement(current, current)
    start = end_s - rule.window_s
    comparison = rule.comparison_window_s or rule.window_s
    previous = await window_value(store, rule, start - comparison, start)
    return Measurement(relative_change(current, previous, rule.direction or "either"),
                       current, previous)


__all__ = ["ZERO_WHEN_EMPTY", "Measurement", "chart_request", "measure", "relative_change",
           "window_value"]
