"""An alert's preview: the series of its measured value for a chart, with its thresholds.

:func:`alert_preview` measures the rule at ``points`` window ends spread evenly over
``[from_s, to_s]`` (the first at ``from_s``, the last at ``to_s``), each point the value over
the rule's window ending there, exactly as the evaluator measures it (:mod:`.measure`; for
drift, the relative change). No data is ``null``.

**One query when it can.** A time-range chart query reads the whole project (versions are
collapsed before the time condition applies), so one query per point would cost ``points``
times that. When the rule's window (and comparison period) is a whole number of days, hours
or minutes, the points are snapped to that grid and every one comes from **one** chart query
bucketed by it: counts and sums add up over buckets, rates and means are weighted by the
values behind each bucket, and a percentile is taken only when the window is exactly one
bucket — the same numbers as the evaluator's. Any other rule (a percentile over several
buckets, a window that is not a whole number of minutes, more than 10,000 buckets) is
measured point by point, :data:`CONCURRENCY` at a time. It reads through the same query handle as
the evaluator, a :class:`~apiary.store.StoreClient`: :func:`preview_store` makes one in any
process of the data plane's Ray cluster (the chDB owner actor, or the ClickHouse server).

:func:`preview_for` reads the rule from ``federation-config`` first (what the data-plane
controller answers an ``AlertPreview`` command with).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyDeletedError, KeyNotFoundError, NotFoundError

from apiary.dataplane.alerts.measure import (
    ZERO_WHEN_EMPTY,
    chart_request,
    measure,
    relative_change,
)
from apiary.dataplane.alerts.rules import RULE_KIND, AlertRule, parse_rule
from apiary.dataplane.alerts.state import key_token
from apiary.dataplane.replica.federation_state import CONFIG_BUCKET
from apiary.errors import InvalidRequest, NotFound
from apiary.settings import ApiarySettings
from apiary.store import StoreClient, store_client

MAX_POINTS = 500
#: The chart queries' bucket limit (``apiary.store``'s ``MAX_BUCKETS``).
MAX_CHART_BUCKETS = 10_000
#: Measurements run at once (each one ClickHouse query, two for drift).
CONCURRENCY = 4


def preview_store(settings: ApiarySettings) -> StoreClient:
    """The query handle :func:`alert_preview` takes, from inside any Ray worker of the data
    plane (the federation controller actor): :func:`apiary.store.store_client`."""
    return store_client(settings)


def _rule(rule: dict[str, Any]) -> AlertRule:
    doc = rule if "object" in rule else {"object": rule, "project_id": rule.get("project_id"),
                                         "version": 0}
    try:
        return parse_rule(doc)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(f"not an alert rule: {exc}", field="rule") from exc


async def alert_preview(store: StoreClient, rule: dict[str, Any], from_s: int, to_s: int,
                        points: int = 60) -> dict[str, Any]:
    """The preview of ``rule`` (the alert as the alerts API returns it, or its
    ``federation-config`` entry ``{"version", "project_id", "object"}``) over
    ``[from_s, to_s]`` (unix seconds): ``{"alert_id", "field", "type", "window_s", "from",
    "to", "series": [{"t", "value"}], "warning", "critical"}``. InvalidRequest for a range
    that is empty or reversed, or ``points`` outside 1..500; store errors as raised."""
    parsed = _rule(rule)
    from_s, to_s = int(from_s), int(to_s)
    if to_s <= from_s:
        raise InvalidRequest("the preview's 'to' must be after its 'from'", field="to",
                             from_s=from_s, to_s=to_s)
    if not 1 <= points <= MAX_POINTS:
        raise InvalidRequest(f"points must be from 1 to {MAX_POINTS}", field="points")
    if points == 1:
        times = [to_s]
    else:
        span = to_s - from_s
        times = sorted({from_s + round(i * span / (points - 1)) for i in range(points)})
    bucket = _bucket_s(parsed)
    series: list[dict[str, Any]] | None = None
    if bucket is not None:
        snapped = sorted({t // bucket * bucket for t in times})
        series = await _bucketed(store, parsed, snapped, bucket)
    if series is None:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def point(t: int) -> dict[str, Any]:
            async with gate:
                measured = await measure(store, parsed, t)
            return {"t": t, "value": measured.value}

        series = list(await asyncio.gather(*(point(t) for t in times)))
    return {
        "alert_id": parsed.alert_id, "field": parsed.field, "type": parsed.type,
        "window_s": parsed.window_s, "from": from_s, "to": to_s, "series": series,
        "warning": None if parsed.warning is None else parsed.warning.as_dict(),
        "critical": None if parsed.critical is None else parsed.critical.as_dict(),
    }


#: Chart bucketings by size, largest first.
_BUCKETINGS = ((86_400, "day"), (3600, "hour"), (60, "minute"))
#: Fields whose value over several buckets is exactly their count-weighted mean.
_WEIGHTED = frozenset({"error_rate"})


def _bucket_s(rule: AlertRule) -> int | None:
    """The largest chart bucket that divides the rule's window(s), if its buckets combine
    exactly into the window's value (percentiles only when the window is one bucket)."""
    spans = [rule.window_s] + ([rule.comparison_window_s or rule.window_s]
                               if rule.type == "drift" else [])
    for size, _ in _BUCKETINGS:
        if all(span % size == 0 for span in spans):
            if rule.field.startswith("latency_p") and any(span != size for span in spans):
                return None
            return size
    return None


def _combine(rule: AlertRule, values: list[float | None], counts: list[int]) -> float | None:
    n = sum(counts)
    if not n:
        return 0.0 if rule.field in ZERO_WHEN_EMPTY else None
    if rule.field in ZERO_WHEN_EMPTY:
        return float(sum(v or 0.0 for v in values))
    if len(values) == 1:
        return values[0]
    # Means and shares: weighted by the values behind each bucket.
    return sum((v or 0.0) * c for v, c in zip(values, counts, strict=True)) / n


async def _bucketed(store: StoreClient, rule: AlertRule, times: list[int],
                    bucket: int) -> list[dict[str, Any]] | None:
    """Every point from one chart query with ``bucket``-second buckets (the same numbers
    as one query per point: counts and sums add up, means are count-weighted, a percentile
    window is one bucket); None when the range holds too many buckets."""
    comparison = (rule.comparison_window_s or rule.window_s) if rule.type == "drift" else 0
    start = times[0] - rule.window_s - comparison
    end = times[-1]
    if (end - start) // bucket + 1 > MAX_CHART_BUCKETS:
        return None
    request = chart_request(rule, start, end)
    request["bucketing"] = dict((s, n) for s, n in _BUCKETINGS)[bucket]
    answer = await store.chart_data(rule.project_id, request, now_ms=end * 1000.0)
    by_start: dict[int, tuple[float | None, int]] = {}
    series = answer.get("series") or []
    if series:
        for b, v, c in zip(answer["buckets"], series[0]["values"], series[0]["counts"],
                           strict=True):
            by_start[int(b) // 1000] = (None if v is None else float(v), int(c))

    def over(lo: int, hi: int) -> float | None:
        cells = [by_start.get(b, (None, 0)) for b in range(lo, hi, bucket)]
        return _combine(rule, [v for v, c in cells if c], [c for _, c in cells if c])

    out = []
    for t in times:
        current = over(t - rule.window_s, t)
        if rule.type == "drift":
            previous = over(t - rule.window_s - comparison, t - rule.window_s)
            value = relative_change(current, previous, rule.direction or "either")
        else:
            value = current
        out.append({"t": t, "value": value})
    return out


async def preview_for(js: JetStreamContext, store: StoreClient, project_id: str,
                      alert_id: str, from_s: int, to_s: int,
                      points: int = 60) -> dict[str, Any]:
    """:func:`alert_preview` of the rule pushed for ``project_id``/``alert_id``;
    :class:`~apiary.errors.NotFound` when this data plane holds no such rule."""
    key = f"{RULE_KIND}.{key_token(project_id)}.{key_token(alert_id)}"
    try:
        kv = await js.key_value(CONFIG_BUCKET)
        entry = await kv.get(key)
    except (BucketNotFoundError, NotFoundError, KeyNotFoundError, KeyDeletedError):
        raise NotFound("alert not found on this data plane", alert_id=alert_id,
                       project_id=project_id) from None
    if not entry.value:
        raise NotFound("alert not found on this data plane", alert_id=alert_id,
                       project_id=project_id)
    return await alert_preview(store, orjson.loads(entry.value), from_s, to_s, points)


__all__ = ["MAX_POINTS", "alert_preview", "preview_for", "preview_store"]
