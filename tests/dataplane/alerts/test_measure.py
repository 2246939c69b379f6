"""Measuring rules on real chDB: every field, the filters, no data, drift, the preview."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from apiary.dataplane.alerts.measure import measure, relative_change
from apiary.dataplane.alerts.preview import alert_preview
from apiary.dataplane.alerts.rules import AlertRule, parse_rule
from apiary.errors import InvalidRequest
from apiary.event import new_event
from apiary.store import DirectStoreClient, EventStore

END = 1_767_225_600  # 2026-01-01T00:00:00Z


def rule(project: str, **condition: Any) -> AlertRule:
    base = {"type": "aggregate", "field": "error_rate", "filters": [], "window_s": 60,
            "warning": {"op": ">=", "value": 0.5}, **condition}
    return parse_rule({"version": 1, "project_id": project, "object": {
        "id": "a1", "project_id": project, "name": "r", "condition": base}})


def _insert(store: EventStore, project: str, rows: list[dict[str, Any]]) -> None:
    events = []
    for i, row in enumerate(rows):
        t = float(row.pop("t")) * 1000.0 + i * 0.001
        eid = str(uuid.uuid4())
        events.append(new_event(event_id=eid, session_id=eid, event_type=row.pop("type",
                                                                                 "model"),
                                event_name=row.pop("name", "llm"), start_time=t,
                                end_time=t + float(row.get("duration", 0.0)), **row))
    store.insert_events({"org_id": "o", "workspace_id": "w", "project_id": project}, 1, events)


@pytest.fixture
def loaded(store: EventStore) -> str:
    """A project with, in the window [END-60, END): 4 model events (2 errors, durations
    100..400, cost and tokens, scores) and a tool event; one event just outside each end."""
    project = f"p-{uuid.uuid4().hex[:10]}"
    rows: list[dict[str, Any]] = [
        {"t": END - 50 + i, "duration": 100.0 * (i + 1), "error": "x" if i < 2 else None,
         "metadata": {"cost": 0.5, "total_tokens": 10},
         "metrics": {"score": 0.25 * i, "ok": i % 2 == 0}, "feedback": {"rating": i}}
        for i in range(4)]
    rows.append({"t": END - 10, "type": "tool", "name": "search", "duration": 5000.0,
                 "error": "x"})
    rows.append({"t": END, "duration": 9000.0, "error": "x"})        # the next window
    rows.append({"t": END - 61, "duration": 9000.0, "error": "x"})   # the previous one
    _insert(store, project, rows)
    return project


async def test_every_field_over_the_window(store: EventStore, loaded: str) -> None:
    client = DirectStoreClient(store)
    model = [{"field": "event_type", "operator": "is", "value": "model"}]

    async def value(field: str, **extra: Any) -> float | None:
        return (await measure(client, rule(loaded, field=field, filters=model, **extra),
                              END)).value

    assert await value("event_count") == 4
    assert await value("error_rate") == 0.5
    assert await value("latency_p50") == pytest.approx(250.0)
    assert await value("latency_p99") == pytest.approx(397.0)
    assert await value("metrics.score") == pytest.approx(0.375)
    assert await value("metrics.ok", aggregation="share_true") == pytest.approx(0.5)
    assert await value("feedback.rating") == pytest.approx(1.5)
    unfiltered = await measure(client, rule(loaded, field="event_count"), END)
    assert unfiltered.value == 5  # the tool event too; neither neighbour


async def test_cost_and_tokens_are_sums(store: EventStore, loaded: str) -> None:
    client = DirectStoreClient(store)
    cost = (await measure(client, rule(loaded, field="cost"), END)).value
    tokens = (await measure(client, rule(loaded, field="tokens"), END)).value
    assert cost == pytest.approx(2.0)  # 4 model events of 0.5 (metadata.cost)
    assert tokens == 40


async def test_an_empty_window_is_zero_for_counts_and_no_value_for_rates(
        store: EventStore, loaded: str) -> None:
    client = DirectStoreClient(store)
    later = END + 3600
    assert (await measure(client, rule(loaded, field="event_count"), later)).value == 0
    assert (await measure(client, rule(loaded, field="cost"), later)).value == 0
    for field in ("error_rate", "latency_p95", "metrics.score"):
        assert (await measure(client, rule(loaded, field=field), later)).value is None


async def test_a_filter_the_export_refuses_is_an_invalid_request(
        store: EventStore, loaded: str) -> None:
    bad = rule(loaded, filters=[{"field": "event_type", "operator": "near", "value": 1}])
    with pytest.raises(InvalidRequest):
        await measure(DirectStoreClient(store), bad, END)


def test_relative_change_per_direction() -> None:
    assert relative_change(150.0, 100.0, "up") == 0.5
    assert relative_change(50.0, 100.0, "up") == -0.5
    assert relative_change(50.0, 100.0, "down") == 0.5
    assert relative_change(50.0, 100.0, "either") == 0.5
    assert relative_change(50.0, 0.0, "either") is None
    assert relative_change(None, 1.0, "up") is None
    assert relative_change(1.0, None, "up") is None


async def test_drift_compares_with_the_period_before(store: EventStore) -> None:
    project = f"p-{uuid.uuid4().hex[:10]}"
    _insert(store, project, [{"t": END - 100 + i, "duration": 100.0} for i in range(10)]
            + [{"t": END - 50 + i, "duration": 300.0} for i in range(10)])
    drift = rule(project, type="drift", field="latency_p50", direction="up",
                 comparison_window_s=60, warning={"op": ">=", "value": 0.5})
    measured = await measure(DirectStoreClient(store), drift, END)
    assert (measured.current, measured.previous) == (300.0, 100.0)
    assert measured.value == pytest.approx(2.0)
    # No previous period: no value.
    assert (await measure(DirectStoreClient(store), drift, END - 60)).value is None


async def test_preview_series_and_thresholds(store: EventStore, loaded: str) -> None:
    alert = {"id": "a1", "project_id": loaded, "name": "r", "condition": {
        "type": "aggregate", "field": "event_count", "filters": [], "window_s": 60,
        "warning": {"op": ">=", "value": 3}, "critical": {"op": ">=", "value": 10}}}
    preview = await alert_preview(DirectStoreClient(store), alert, END - 120, END + 120, 5)
    assert preview["alert_id"] == "a1"
    assert preview["window_s"] == 60
    assert preview["warning"] == {"op": ">=", "value": 3.0}
    assert preview["critical"] == {"op": ">=", "value": 10.0}
    assert [p["t"] for p in preview["series"]] == [END - 120, END - 60, END, END + 60,
                                                  END + 120]
    assert [p["value"] for p in preview["series"]] == [0.0, 1.0, 5.0, 1.0, 0.0]
    rates = await alert_preview(DirectStoreClient(store), {**alert, "condition": {
        **alert["condition"], "field": "error_rate"}}, END + 60, END + 120, 2)
    assert [p["value"] for p in rates["series"]] == [1.0, None]
    with pytest.raises(InvalidRequest):
        await alert_preview(DirectStoreClient(store), alert, END, END - 1)


@pytest.mark.parametrize("condition", [
    {"field": "event_count", "window_s": 120},
    {"field": "error_rate", "window_s": 180},
    {"field": "cost", "window_s": 120},
    {"field": "metrics.score", "window_s": 120},
    {"field": "metrics.ok", "aggregation": "share_true", "window_s": 120},
    {"field": "latency_p95", "window_s": 60},
    {"field": "latency_p95", "window_s": 120},  # several buckets: measured point by point
    {"type": "drift", "field": "error_rate", "window_s": 60, "comparison_window_s": 120,
     "direction": "either"},
], ids=lambda c: f"{c.get('type', 'aggregate')}-{c['field']}-{c['window_s']}")
async def test_the_one_query_preview_equals_the_evaluators_measurements(
        store: EventStore, condition: dict[str, Any]) -> None:
    """Differential: every point of the preview is what the evaluator measures there."""
    project = f"p-{uuid.uuid4().hex[:10]}"
    rows: list[dict[str, Any]] = []
    for i in range(40):  # 40 events over 20 minutes, varied
        rows.append({"t": END - 1200 + i * 29, "duration": 50.0 + (i * 37) % 400,
                     "error": "x" if i % 3 == 0 else None,
                     "metadata": {"cost": 0.1 * (i % 4)},
                     "metrics": {"score": (i % 5) / 4, "ok": i % 2 == 0}})
    _insert(store, project, rows)
    client = DirectStoreClient(store)
    alert = {"id": "a1", "project_id": project, "name": "r", "condition": {
        "type": "aggregate", "filters": [], "warning": {"op": ">=", "value": 1},
        **condition}}
    preview = await alert_preview(client, alert, END - 1320, END + 60, 24)
    parsed = rule(project, **{k: v for k, v in alert["condition"].items()
                              if k not in ("filters",)})
    for point in preview["series"]:
        expected = (await measure(client, parsed, point["t"])).value
        assert point["value"] == pytest.approx(expected), point
    assert sum(p["value"] is not None for p in preview["series"]) >= 10
