"""Charts over HTTP: saved charts (both HoneyHive path families) validated with the SDK's
models, chart data checked against numbers computed here from the inserted events,
tenant isolation, permissions and every 4xx.

Events go straight into the store (``Product.insert``): that is what chart data is
computed from, not the API under test.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from _product_plane import (
    Product,
    event,
    product_fixture,  # noqa: F401  (the `product` fixture)
)
from honeyhive._generated.models import (
    CreateChartRequest,
    CreateChartResponse,
    DeleteChartResponse,
    GetChartResponse,
    GetChartsResponse,
    UpdateChartRequest,
    UpdateChartResponse,
)

T0 = 1_709_251_200_000  # 2024-03-01T00:00:00Z
HOUR = 3_600_000
RANGE = {"$gte": T0, "$lte": T0 + 2 * HOUR - 1}
DURATIONS = {"gpt-4o": [120.0, 340.0, 80.0, 910.0, 450.0], "claude": [60.0, 1500.0, 220.0]}


def _events(tag: str) -> list[Any]:
    """Model calls in two hours, two models, costs, a failing one; one session each."""
    out = []
    for n, (model, durations) in enumerate(DURATIONS.items()):
        for i, duration in enumerate(durations):
            start = T0 + (i % 2) * HOUR + n * 1000 + i * 10
            out.append(event(event_type="model", event_name="llm", start_time=start,
                             end_time=start + duration, duration=duration,
                             config={"model": model, "provider": "p"},
                             metadata={"user_id": f"{tag}-u{i % 2}", "cost": 0.5 * (i + 1)},
                             metrics={"score": i / 10},
                             error="boom" if (n, i) == (0, 3) else None))
    return out


@pytest.fixture(scope="module")
def loaded(product: Product) -> list[Any]:
    events = _events("a")
    product.insert(product.projects["a"], events)
    product.insert(product.projects["b"], _events("b")[:2])
    return events


def _sdk_body(**fields: Any) -> dict[str, Any]:
    """A request body exactly as the SDK serializes its model."""
    return CreateChartRequest(**fields).model_dump(exclude_none=True)


async def _query(product: Product, body: dict[str, Any], who: str = "a",
                 path: str = "/v1/charts/query") -> dict[str, Any]:
    answer = await product.ok("POST", path, who, json=body)
    assert answer["success"] is True
    data: dict[str, Any] = answer["data"]
    return data


async def test_saved_chart_crud_on_both_path_families(product: Product) -> None:
    project = product.projects["a"]
    body = _sdk_body(name="p95 latency", metric="duration", func="p95", groupBy="model",
                     bucketing="hour", dateRange={"$gte": T0, "$lte": T0 + HOUR},
                     query=[{"field": "event_type", "operator": "is", "value": "model",
                             "type": "string"}])
    assert body["dateRange"] == {"gte": T0, "lte": T0 + HOUR}  # python names on the wire
    created = await product.ok("POST", "/v1/charts", json=body)
    chart = CreateChartResponse(**created).data
    assert (chart.metric, chart.func, chart.groupBy, chart.bucketing) == (
        "duration", "p95", "model", "hour")
    assert chart.dateRange == {"$gte": T0, "$lte": T0 + HOUR}
    assert chart.query == [{"field": "event_type", "operator": "is", "value": "model",
                            "type": "string"}]
    assert chart.is_active is True
    assert created["data"]["project_id"] == project

    second = await product.ok("POST", f"/v1/projects/{project}/charts",
                              json=_sdk_body(name="volume", metric="event_count"))
    second_id = CreateChartResponse(**second).data.id
    assert second["data"]["bucketing"] == "day"

    for path in ("/v1/charts", f"/v1/projects/{project}/charts"):
        listed = GetChartsResponse(**await product.ok("GET", path, "a_read"))
        assert {c.id for c in listed.data} == {chart.id, second_id}
        got = GetChartResponse(**await product.ok("GET", f"{path}/{chart.id}", "a_read"))
        assert got.data.name == "p95 latency"

    change = UpdateChartRequest(name="p99 latency", func="p99").model_dump(exclude_none=True)
    updated = UpdateChartResponse(**await product.ok(
        "PUT", f"/v1/charts/{chart.id}", json=change)).data
    assert (updated.name, updated.func, updated.groupBy) == ("p99 latency", "p99", "model")
    patched = UpdateChartResponse(**await product.ok(
        "PATCH", f"/v1/projects/{project}/charts/{chart.id}",
        json={"groupBy": None, "dateRange": {"relative": "7d"}})).data
    assert (patched.groupBy, patched.func, patched.dateRange) == (
        None, "p99", {"relative": "7d"})
    assert patched.updated_at is not None
    assert patched.updated_at >= patched.created_at

    deleted = DeleteChartResponse(**await product.ok("DELETE", f"/v1/charts/{chart.id}"))
    assert deleted.success is True
    await product.fails(404, "GET", f"/v1/charts/{chart.id}")
    await product.fails(404, "DELETE", f"/v1/projects/{project}/charts/{chart.id}")
    await product.ok("DELETE", f"/v1/projects/{project}/charts/{second_id}")
    assert (await product.ok("GET", "/v1/charts"))["data"] == []


async def test_query_numbers_match_the_events(product: Product, loaded: list[Any]) -> None:
    latency = await _query(product, {"metric": "duration", "func": "p90", "groupBy": "model",
                                     "bucketing": "hour", "dateRange": RANGE})
    assert latency["buckets"] == [T0, T0 + HOUR]
    for series in latency["series"]:
        durations = DURATIONS[series["group"]]
        per_hour = [durations[0::2], durations[1::2]]
        assert series["values"] == pytest.approx(
            [float(np.percentile(d, 90)) for d in per_hour])
        assert series["counts"] == [len(d) for d in per_hour]
    assert [s["group"] for s in latency["series"]] == ["gpt-4o", "claude"]  # most events first

    cost = await _query(product, {"metric": "cost", "bucketing": "all", "dateRange": RANGE,
                                  "groupBy": "metadata.user_id"})
    want: dict[str, float] = {}
    for e in loaded:
        want[e["metadata"]["user_id"]] = want.get(e["metadata"]["user_id"], 0.0) + \
            e["metadata"]["cost"]
    assert {s["group"]: s["values"][0] for s in cost["series"]} == pytest.approx(want)

    rate = await _query(product, {"metric": "error_rate", "bucketing": "all",
                                  "dateRange": RANGE, "filters": [
                                      {"field": "config.model", "operator": "is",
                                       "value": "gpt-4o"}]})
    assert rate["series"][0]["values"] == [pytest.approx(1 / 5)]

    score = await _query(product, {"metric": "metrics.score", "func": "avg",
                                   "bucketing": "day", "dateRange": RANGE})
    assert score["series"][0]["values"] == [pytest.approx(
        float(np.mean([e["metrics"]["score"] for e in loaded])))]

    sessions = await _query(product, {"metric": "session_count", "bucketing": "hour",
                                      "dateRange": RANGE})
    assert sessions["source"] == "session_aggregates"
    assert sessions["series"][0]["values"] == [5.0, 3.0]


async def test_saved_chart_data_is_the_query_of_its_definition(product: Product,
                                                               loaded: list[Any]) -> None:
    project = product.projects["a"]
    definition = {"name": f"c-{uuid.uuid4().hex[:6]}", "metric": "event_count",
                  "groupBy": "model", "bucketing": "hour", "dateRange": RANGE}
    chart = (await product.ok("POST", "/v1/charts", json=definition))["data"]
    expected = await _query(product, {k: v for k, v in definition.items() if k != "name"})
    for path in (f"/v1/charts/{chart['id']}/data",
                 f"/v1/projects/{project}/charts/{chart['id']}/data"):
        answer = await product.ok("GET", path, "a_read")
        assert answer["data"] == expected
    assert {s["group"]: sum(s["values"]) for s in expected["series"]} == {
        m: float(len(d)) for m, d in DURATIONS.items()}
    narrowed = await product.ok("GET", f"/v1/charts/{chart['id']}/data", params={
        "dateRange": f'{{"$gte": {T0 + HOUR}, "$lte": {T0 + 2 * HOUR - 1}}}', "max_groups": 1})
    assert narrowed["data"]["buckets"] == [T0 + HOUR]
    assert [s["group"] for s in narrowed["data"]["series"]] == ["gpt-4o"]
    assert narrowed["data"]["truncated"] is True
    assert narrowed["data"]["series"][0]["values"] == [2.0]
    relative = await product.ok("GET", f"/v1/charts/{chart['id']}/data",
                                params={"dateRange": "1h"})
    assert relative["data"]["series"] == []  # nothing stored in the last hour


async def test_tenants_never_see_each_others_charts_or_data(product: Product,
                                                            loaded: list[Any]) -> None:
    a, b = product.projects["a"], product.projects["b"]
    chart = (await product.ok("POST", "/v1/charts", json={"name": "mine",
                                                          "metric": "cost"}))["data"]
    assert chart["id"] not in {c["id"] for c in
                               (await product.ok("GET", "/v1/charts", "b"))["data"]}
    for method, suffix, kwargs in (("GET", "", {}), ("PUT", "", {"json": {"name": "x"}}),
                                   ("DELETE", "", {}), ("GET", "/data", {})):
        await product.fails(404, method, f"/v1/charts/{chart['id']}{suffix}", "b", **kwargs)
        await product.fails(404, method, f"/v1/projects/{b}/charts/{chart['id']}{suffix}",
                            "b", **kwargs)
    for method, path in (("GET", f"/v1/projects/{a}/charts"),
                         ("GET", f"/v1/projects/{a}/charts/{chart['id']}"),
                         ("DELETE", f"/v1/projects/{a}/charts/{chart['id']}"),
                         ("GET", f"/v1/projects/{a}/charts/{chart['id']}/data")):
        body = await product.fails(403, method, path, "b")
        assert body["errorCode"] == "forbidden"
    await product.fails(403, "POST", f"/v1/projects/{a}/charts/query", "b",
                        json={"metric": "event_count"})
    # B's data is B's only: two events of its own, none of A's eight.
    counts = await _query(product, {"metric": "event_count", "bucketing": "all",
                                    "dateRange": RANGE, "groupBy": "metadata.user_id"}, "b")
    assert {s["group"]: s["values"] for s in counts["series"]} == {
        "b-u0": [1.0], "b-u1": [1.0]}
    assert (await product.ok("GET", f"/v1/charts/{chart['id']}"))["data"]["name"] == "mine"


async def test_permissions(product: Product) -> None:
    body = {"name": "n", "metric": "event_count"}
    await product.fails(403, "POST", "/v1/charts", "a_read", json=body)
    chart = (await product.ok("POST", "/v1/charts", json=body))["data"]
    await product.fails(403, "PATCH", f"/v1/charts/{chart['id']}", "a_read", json=body)
    await product.fails(403, "DELETE", f"/v1/charts/{chart['id']}", "a_read")
    await product.fails(403, "GET", "/v1/charts", "ws")
    await product.fails(403, "POST", "/v1/charts/query", "ws", json={"metric": "cost"})
    response = await product.http.get("/v1/charts")
    assert response.status_code == 401
    assert response.json()["errorCode"] == "unauthenticated"


@pytest.mark.parametrize(("method", "path", "body", "where"), [
    ("POST", "/v1/charts", {"metric": "cost"}, "name"),
    ("POST", "/v1/charts", {"name": "x", "metric": "nope"}, "metric"),
    ("POST", "/v1/charts", {"name": " ", "metric": "cost"}, "name"),
    ("POST", "/v1/charts", {"name": "x", "metric": "cost", "bucketing": "year"}, "bucketing"),
    ("POST", "/v1/charts", {"name": "x", "metric": "cost", "colour": "red"}, "colour"),
    ("POST", "/v1/charts", {"name": "x", "metric": "cost", "dateRange": {"since": 1}},
     "since"),
    ("POST", "/v1/charts", {"name": "x", "metric": "cost", "query": [
        {"field": "metadata.a", "operator": "resembles", "value": "b"}]}, "operator"),
    ("POST", "/v1/charts/query", {"metric": "event_count", "func": "p95"}, "func"),
    ("POST", "/v1/charts/query", {"metric": "cost", "groupBy": "cost"}, "groupBy"),
    ("POST", "/v1/charts/query", {"metric": "cost", "max_groups": 500}, "max_groups"),
    ("POST", "/v1/charts/query", {"metric": "cost", "bucketing": "minute",
                                  "dateRange": {"relative": "90d"}}, "dateRange"),
    ("POST", "/v1/charts/query", {"metric": "cost", "dateRange": {"$gte": "soon"}},
     "dateRange"),
    ("POST", "/v1/charts/query", {"metric": "session_cost", "filters": [
        {"field": "source", "operator": "is", "value": "x"}]}, "query"),
    ("POST", "/v1/charts/query", [], "body"),
])
async def test_bad_input_is_a_precise_400(product: Product, method: str, path: str,
                                          body: Any, where: str) -> None:
    error = await product.fails(400, method, path, json=body)
    assert error["errorCode"] == "invalid_request"
    assert where in error["message"] or error.get("details", {}).get("field") == where, error


async def test_bad_updates_and_data_overrides(product: Product) -> None:
    chart = (await product.ok("POST", "/v1/charts", json={
        "name": "u", "metric": "duration", "bucketing": "hour"}))["data"]
    for change in ({"metric": None}, {"func": "median-ish"}, {"bucketing": "minute",
                                                             "dateRange": {"relative": "60d"}},
                   {"groupBy": "session_duration"}):
        await product.fails(400, "PUT", f"/v1/charts/{chart['id']}", json=change)
    still = (await product.ok("GET", f"/v1/charts/{chart['id']}"))["data"]
    assert (still["metric"], still["func"], still["bucketing"]) == ("duration", None, "hour")
    for raw in ("{not json", "[1]", "seven days", '{"$gte": "x"}'):
        await product.fails(400, "GET", f"/v1/charts/{chart['id']}/data",
                            params={"dateRange": raw})
    await product.fails(400, "GET", f"/v1/charts/{chart['id']}/data",
                        params={"max_groups": 0})
    await product.fails(404, "GET", "/v1/charts/no-such-chart/data")
