"""Experiment runs over HTTP: CRUD, results computed from stored events (aggregates,
percentiles, pass/fail), comparisons, dataset versions, tenancy and every 4xx.

Run events go straight into the store (``Product.insert``) with ``metadata.run_id`` /
``datapoint_id`` / ``dataset_id`` and scores in ``metrics``, as ``evaluate()``'s spans
carry them; every number below is checked against a hand computation.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from _product_plane import (
    Product,
    event,
    honeyhive_body,
    product_fixture,  # noqa: F401  (the `product` fixture)
)
from honeyhive._generated.models import (
    DeleteExperimentRunResponse,
    GetExperimentCompareEventsResponse,
    GetExperimentRunCompareResponse,
    GetExperimentRunResponse,
    GetExperimentRunResultResponse,
    GetExperimentRunsResponse,
    PostExperimentRunResponse,
    PutExperimentRunResponse,
)
from honeyhive.experiments.models import AggregatedMetrics, DatapointResult

from apiary.dataplane.writer import WriterLoop
from apiary.objects import LocalObjectStore
from apiary.queue import NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient

ACCURACY = {"dp1": 0.2, "dp2": 0.4, "dp3": 0.9, "dp4": 1.0}
EXACT = {"dp1": False, "dp2": True, "dp3": True, "dp4": True}


def _run_events(run_id: str, dataset_id: str, scores: dict[str, float],
                exact: dict[str, bool] | None = None) -> tuple[list[Any], dict[str, str]]:
    """evaluate()'s events for each datapoint: a session, a scored chain, a tool child."""
    events, sessions = [], {}
    for n, (datapoint, score) in enumerate(scores.items()):
        session = str(uuid.uuid4())
        sessions[datapoint] = session
        meta = {"run_id": run_id, "dataset_id": dataset_id, "datapoint_id": datapoint}
        start = 1_700_000_000_000.0 + n * 1000
        chain = str(uuid.uuid4())
        metrics: dict[str, Any] = {"accuracy": score,
                                   "accuracy_explanation": f"because {datapoint}",
                                   "label": "good" if score > 0.5 else "bad"}
        if exact is not None:
            metrics["exact"] = exact[datapoint]
        events += [
            event(event_id=session, session_id=session, event_type="session",
                  event_name="wire-eval", metadata=meta, start_time=start,
                  outputs={"answer": datapoint}),
            event(event_id=chain, session_id=session, parent_id=session, event_type="chain",
                  event_name="answer", metadata=meta, metrics=metrics, start_time=start + 1,
                  outputs={"result": score}),
            event(session_id=session, parent_id=chain, event_type="tool",
                  event_name="helper", metadata=meta, start_time=start + 2),
        ]
    return events, sessions


async def _open_run(product: Product, who: str = "a", **body: Any) -> dict[str, Any]:
    body.setdefault("run_id", str(uuid.uuid4()))
    created: dict[str, Any] = await product.ok("POST", "/v1/runs", who, json=body)
    PostExperimentRunResponse(**created)
    assert created["run_id"] == body["run_id"]
    evaluation: dict[str, Any] = created["evaluation"]
    return evaluation


async def _result(product: Product, run_id: str, who: str = "a",
                  **params: str) -> dict[str, Any]:
    result: dict[str, Any] = await product.ok("GET", f"/v1/runs/{run_id}/result", who,
                                              params=params)
    GetExperimentRunResultResponse(**result)
    # evaluate() validates once more with its own models: these must not raise.
    AggregatedMetrics(**GetExperimentRunResultResponse(**result).model_dump()["metrics"])
    for datapoint in result["datapoints"]:
        DatapointResult(**datapoint)
    return result


def _detail(result: dict[str, Any], name: str) -> dict[str, Any]:
    (detail,) = [d for d in result["metrics"]["details"] if d["metric_name"] == name]
    assert isinstance(detail, dict)
    return detail


async def test_the_evaluate_flow_and_its_results(product: Product) -> None:
    body = honeyhive_body("rest_runs_create_evaluate_external")
    run_id = body["run_id"] = str(uuid.uuid4())
    run = await _open_run(product, **body, passing_ranges={"accuracy": {"min": 0.5}})
    assert run["status"] == "pending"
    assert run["scope_type"] == "project"
    assert run["scope_id"] == product.projects["a"]
    assert run["dataset_version_id"] is None
    events, sessions = _run_events(run_id, "EXT-0123456789abcdef", ACCURACY, EXACT)
    product.insert(product.projects["a"], events)
    closing = honeyhive_body("rest_runs_update_evaluate_external")
    closing["event_ids"] = list(sessions.values())
    closed = await product.ok("PUT", f"/v1/runs/{run_id}", json=closing)
    PutExperimentRunResponse(**closed)
    assert closed["evaluation"]["status"] == "completed"
    assert closed["evaluation"]["metadata"]["offline_dataset_id"] == \
        closing["metadata"]["offline_dataset_id"]

    result = await _result(product, run_id, aggregate_function="average")
    assert result["status"] == "completed"
    assert result["success"] is True
    assert result["metrics"]["aggregation_function"] == "average"
    accuracy = _detail(result, "accuracy")
    assert accuracy["aggregate"] == pytest.approx(0.625)
    assert accuracy["values"] == pytest.approx([0.2, 0.4, 0.9, 1.0])
    assert (accuracy["event_name"], accuracy["event_type"]) == ("answer", "chain")
    assert accuracy["passing_range"] == {"min": 0.5, "max": None}
    assert accuracy["datapoints"] == {"passed": ["dp3", "dp4"], "failed": ["dp1", "dp2"]}
    exact = _detail(result, "exact")
    assert exact["metric_type"] == "boolean"
    assert exact["aggregate"] == pytest.approx(0.75)
    assert exact["datapoints"] == {"passed": ["dp2", "dp3", "dp4"], "failed": ["dp1"]}
    label = _detail(result, "label")
    assert label["metric_type"] == "string"
    assert label["values"] == []
    assert label["aggregate"] is None
    assert label["datapoints"] is None
    assert "accuracy_explanation" not in {d["metric_name"] for d in
                                          result["metrics"]["details"]}
    assert result["passed"] == ["dp3", "dp4"]
    assert result["failed"] == ["dp1", "dp2"]
    by_datapoint = {d["datapoint_id"]: d for d in result["datapoints"]}
    assert set(by_datapoint) == set(ACCURACY)
    assert by_datapoint["dp2"]["session_id"] == sessions["dp2"]
    assert by_datapoint["dp2"]["passed"] is False
    metrics = {m["name"]: m for m in by_datapoint["dp2"]["metrics"]}
    assert metrics["accuracy"]["value"] == pytest.approx(0.4)
    assert metrics["accuracy"]["passed"] is False
    assert metrics["exact"]["passed"] is True
    assert metrics["label"]["value"] is None
    assert metrics["label"]["text"] == "bad"
    assert {(d["event_name"], d["event_type"]) for d in result["event_details"]} == {
        ("wire-eval", "session"), ("answer", "chain"), ("helper", "tool")}
    assert result["run_object"]["run_id"] == run_id

    expected = {"median": 0.65, "p50": 0.65, "p90": 0.97, "p95": 0.985, "p99": 0.997,
                "min": 0.2, "max": 1.0, "sum": 2.5, "count": 4.0}
    for function, value in expected.items():
        aggregated = await _result(product, run_id, aggregate_function=function)
        assert _detail(aggregated, "accuracy")["aggregate"] == pytest.approx(value), function
        assert aggregated["metrics"]["aggregation_function"] == function


async def test_pass_rules_of_every_kind_and_result_filters(product: Product) -> None:
    run_id = str(uuid.uuid4())
    await _open_run(product, run_id=run_id, passing_ranges={
        "accuracy": {"min": 0.3, "max": 0.95}, "label": {"passing_categories": ["good"]},
        "exact": {"pass_when": False}})
    events, _ = _run_events(run_id, "EXT-x", ACCURACY, EXACT)
    product.insert(product.projects["a"], events)
    result = await _result(product, run_id)
    assert _detail(result, "accuracy")["datapoints"] == {"passed": ["dp2", "dp3"],
                                                         "failed": ["dp1", "dp4"]}
    assert _detail(result, "label")["datapoints"] == {"passed": ["dp3", "dp4"],
                                                      "failed": ["dp1", "dp2"]}
    assert _detail(result, "exact")["datapoints"] == {"passed": ["dp1"],
                                                      "failed": ["dp2", "dp3", "dp4"]}
    assert result["passed"] == []
    assert set(result["failed"]) == set(ACCURACY)
    # Ranges set later apply to the same events (results are never stored).
    await product.ok("PUT", f"/v1/runs/{run_id}", json={"passing_ranges": {
        "accuracy": {"min": 0}, "label": {"passing_categories": ["good", "bad"]},
        "exact": {"pass_when": True}}})
    relaxed = await _result(product, run_id)
    assert relaxed["passed"] == ["dp2", "dp3", "dp4"]
    assert relaxed["failed"] == ["dp1"]
    only_tools = await _result(product, run_id, filters=json.dumps(
        {"field": "event_type", "operator": "is", "value": "tool", "type": "string"}))
    assert only_tools["metrics"]["details"] == []
    assert {d["datapoint_id"] for d in only_tools["datapoints"]} == set(ACCURACY)
    assert all(d["metrics"] == [] and d["passed"] for d in only_tools["datapoints"])


async def test_sessions_named_by_the_run_count_without_run_metadata(product: Product) -> None:
    run_id = str(uuid.uuid4())
    session = str(uuid.uuid4())
    product.insert(product.projects["a"], [
        event(session_id=session, event_type="chain", event_name="f",
              metadata={"datapoint_id": "solo"}, metrics={"score": 3})])
    await _open_run(product, run_id=run_id, event_ids=[session])
    result = await _result(product, run_id)
    assert _detail(result, "score")["values"] == [3.0]
    assert result["datapoints"][0]["datapoint_id"] == "solo"
    assert result["passed"] == ["solo"]


async def test_compare_runs_with_per_datapoint_deltas(product: Product) -> None:
    old_id, new_id = str(uuid.uuid4()), str(uuid.uuid4())
    await _open_run(product, run_id=old_id)
    await _open_run(product, run_id=new_id)
    old_events, old_sessions = _run_events(old_id, "EXT-c", ACCURACY)
    new_scores = {"dp1": 0.5, "dp2": 0.4, "dp3": 0.85, "dp5": 0.7}
    new_events, new_sessions = _run_events(new_id, "EXT-c", new_scores)
    product.insert(product.projects["a"], old_events + new_events)
    compared = await product.ok("GET", f"/v1/runs/{new_id}/compare-with/{old_id}",
                                params={"aggregate_function": "average"})
    GetExperimentRunCompareResponse(**compared)
    assert compared["commonDatapoints"] == ["dp1", "dp2", "dp3"]
    (accuracy,) = [m for m in compared["metrics"] if m["metric_name"] == "accuracy"]
    assert accuracy["old_aggregate"] == pytest.approx(0.625)
    assert accuracy["new_aggregate"] == pytest.approx(0.6125)
    assert accuracy["difference"] == pytest.approx(-0.0125)
    assert accuracy["percentage_change"] == pytest.approx(-2.0)
    assert (accuracy["improved"], accuracy["degraded"], accuracy["same"]) == (
        ["dp1"], ["dp3"], ["dp2"])
    assert accuracy["found_count"] == 3
    deltas = {d["datapoint_id"]: d["delta"] for d in accuracy["datapoints"]}
    assert deltas == pytest.approx({"dp1": 0.3, "dp2": 0.0, "dp3": -0.05})
    assert compared["old_run"]["run_id"] == old_id
    assert compared["new_run"]["run_id"] == new_id
    assert {e["presence"] for e in compared["event_details"]} == {"both"}
    alias = await product.ok("GET", f"/v1/runs/{new_id}/compare/{old_id}")
    assert alias["commonDatapoints"] == compared["commonDatapoints"]

    paired = await product.ok("GET", "/v1/runs/compare/events", params={
        "run_id_1": new_id, "run_id_2": old_id, "event_name": "answer", "limit": 2})
    GetExperimentCompareEventsResponse(**paired)
    assert paired["totalEvents"] == 3
    assert len(paired["events"]) == 2
    first = paired["events"][0]
    assert first["datapoint_id"] == "dp1"
    assert first["event_1"]["session_id"] == new_sessions["dp1"]
    assert first["event_2"]["session_id"] == old_sessions["dp1"]
    assert first["event_1"]["metrics"]["accuracy"] == 0.5
    page_two = await product.ok("GET", f"/v1/runs/{new_id}/compare/{old_id}/events",
                                params={"event_name": "answer", "limit": 2, "page": 2})
    assert [e["datapoint_id"] for e in page_two["events"]] == ["dp3"]
    sessions = await product.ok("GET", "/v1/runs/compare/events",
                                params={"run_id_1": new_id, "run_id_2": old_id})
    assert {e["event_1"]["event_type"] for e in sessions["events"]} == {"session"}


async def test_runs_record_the_dataset_version(product: Product) -> None:
    point = (await product.ok("POST", "/v1/datapoints", json={"inputs": {"q": "old"}})
             )["result"]["insertedIds"][0]
    dataset_id = (await product.ok("POST", "/v1/datasets", json={
        "name": f"runs-{uuid.uuid4().hex[:6]}", "datapoints": [point]}))["result"]["insertedId"]
    body = honeyhive_body("rest_runs_create_evaluate_dataset_id") | {
        "run_id": str(uuid.uuid4()), "dataset_id": dataset_id, "datapoint_ids": [point]}
    first = await _open_run(product, **body)
    assert first["dataset_id"] == dataset_id
    assert first["dataset_name"].startswith("runs-")
    same = await _open_run(product, dataset_id=dataset_id)
    assert same["dataset_version_id"] == first["dataset_version_id"] is not None
    await product.ok("PUT", f"/v1/datapoints/{point}", json={"inputs": {"q": "new"}})
    later = await _open_run(product, dataset_id=dataset_id)
    assert later["dataset_version_id"] != first["dataset_version_id"]
    frozen = await product.ok(
        "GET", f"/v1/datasets/{dataset_id}/versions/{first['dataset_version_id']}")
    assert [d["inputs"] for d in frozen["datapoints"]] == [{"q": "old"}]
    fetched = await product.ok("GET", f"/v1/runs/{first['run_id']}")
    GetExperimentRunResponse(**fetched)
    assert fetched["evaluation"]["dataset_version_id"] == first["dataset_version_id"]
    await product.fails(400, "POST", "/v1/runs", json={"dataset_id": str(uuid.uuid4())})
    # Recording a dataset's version reads the dataset: datasets:read is needed then.
    await product.fails(403, "POST", "/v1/runs", "a_events", json={"dataset_id": dataset_id})
    offline = await _open_run(product, "a_events", dataset_id="EXT-00000000000000ff")
    assert offline["dataset_version_id"] is None


async def test_list_get_delete(product: Product) -> None:
    dataset = f"ds-list-{uuid.uuid4().hex[:6]}"
    ids = [(await _open_run(product, "a_events", dataset_id=f"EXT-{dataset}-{i}",
                            name=f"listing {dataset} {i}", status=status,
                            configuration={"evaluators": ["accuracy", "exact"]}))["run_id"]
           for i, status in enumerate(("completed", "pending", "completed"))]
    listed = await product.ok("GET", "/v1/runs", params=[
        ("name", dataset), ("status", "completed"), ("page", "1"), ("limit", "1"),
        ("sort_by", "name"), ("sort_order", "asc")])
    GetExperimentRunsResponse(**listed)
    assert [r["run_id"] for r in listed["evaluations"]] == [ids[0]]
    pagination = listed["pagination"]
    assert (pagination["total"], pagination["total_pages"], pagination["has_next"],
            pagination["has_prev"]) == (2, 2, True, False)
    assert pagination["total_unfiltered"] >= 3
    assert listed["metrics"] == ["accuracy", "exact"]
    by_ids = await product.ok("GET", "/v1/runs", params=[("run_ids[]", ids[1]),
                                                         ("run_ids[]", ids[2])])
    assert {r["run_id"] for r in by_ids["evaluations"]} == {ids[1], ids[2]}
    by_dataset = await product.ok("GET", "/v1/runs", params={"dataset_id": f"EXT-{dataset}-1"})
    assert [r["run_id"] for r in by_dataset["evaluations"]] == [ids[1]]
    recent = await product.ok("GET", "/v1/runs", params={"dateRange": "1h", "name": dataset})
    assert recent["pagination"]["total"] == 3
    window = json.dumps({"$lte": "2001-01-01T00:00:00Z"})
    assert (await product.ok("GET", "/v1/runs", params={"dateRange": window})
            )["evaluations"] == []
    deleted = await product.ok("DELETE", f"/v1/runs/{ids[0]}", "a_events")
    DeleteExperimentRunResponse(**deleted)
    assert deleted == {"id": ids[0], "deleted": True}
    await product.fails(404, "GET", f"/v1/runs/{ids[0]}")
    await product.fails(404, "GET", f"/v1/runs/{ids[0]}/result")


async def test_tenants_never_see_each_other(product: Product) -> None:
    run_id = str(uuid.uuid4())
    await _open_run(product, run_id=run_id)
    events, _ = _run_events(run_id, "EXT-t", {"dp1": 0.5})
    product.insert(product.projects["a"], events)
    for method, path in (("GET", f"/v1/runs/{run_id}"), ("PUT", f"/v1/runs/{run_id}"),
                         ("DELETE", f"/v1/runs/{run_id}"),
                         ("GET", f"/v1/runs/{run_id}/result"),
                         ("GET", f"/v1/runs/{run_id}/compare-with/{run_id}")):
        await product.fails(404, method, path, "b", json={} if method == "PUT" else None)
    await product.fails(404, "GET", "/v1/runs/compare/events", "b",
                        params={"run_id_1": run_id, "run_id_2": run_id})
    assert run_id not in {r["run_id"] for r in
                          (await product.ok("GET", "/v1/runs", "b"))["evaluations"]}
    # B may use the same run id; A's events never count in B's run.
    await _open_run(product, "b", run_id=run_id)
    assert (await _result(product, run_id, "b"))["datapoints"] == []
    assert len((await _result(product, run_id))["datapoints"]) == 1
    await product.fails(409, "POST", "/v1/runs", json={"run_id": run_id})


@pytest.mark.parametrize(("method", "path", "body", "params"), [
    ("POST", "/v1/runs", {"status": "exploded"}, None),
    ("POST", "/v1/runs", {"run_id": ""}, None),
    ("POST", "/v1/runs", {"typo": 1}, None),
    ("POST", "/v1/runs", {"passing_ranges": {"a": {"min": 2, "max": 1}}}, None),
    ("POST", "/v1/runs", {"passing_ranges": {"a": 5}}, None),
    ("POST", "/v1/runs", {"event_ids": "s1"}, None),
    ("GET", "/v1/runs", None, {"sort_by": "secret"}),
    ("GET", "/v1/runs", None, {"dateRange": "yesterday"}),
    ("GET", "/v1/runs", None, {"limit": "0"}),
    ("GET", "/v1/runs/compare/events", None, {"run_id_1": "x"}),
])
async def test_bad_input_is_400(product: Product, method: str, path: str,
                                body: dict[str, Any] | None,
                                params: dict[str, str] | None) -> None:
    await product.fails(400, method, path, json=body, params=params)


async def test_bad_result_queries_are_400(product: Product) -> None:
    run_id = (await _open_run(product))["run_id"]
    for params in ({"aggregate_function": "mode"}, {"aggregate_function": "p101"},
                   {"filters": "not json"}, {"filters": "[1]"},
                   {"filters": json.dumps([{"field": "x y", "operator": "is"}])}):
        await product.fails(400, "GET", f"/v1/runs/{run_id}/result", params=params)
    await product.fails(400, "PUT", f"/v1/runs/{run_id}", json={"status": "nope"})
    await product.fails(403, "PUT", f"/v1/runs/{run_id}", "a_read", json={})
    await product.fails(403, "POST", "/v1/runs", "a_read", json={})
    await product.ok("GET", f"/v1/runs/{run_id}/result", "a_read")
    await product.fails(401, "GET", f"/v1/runs/{run_id}", headers={"authorization": "x"})


def _scored_span(session: str, run_id: str, datapoint: str, score: float) -> dict[str, Any]:
    """One datapoint's chain span as ``evaluate()`` exports it (OTLP JSON, the SDK's
    encoder): run metadata and the evaluator's score as ``honeyhive_metrics.<name>``."""
    now = time.time_ns()
    attributes = {"honeyhive.session_id": session, "honeyhive.source": "evaluation",
                  "honeyhive_event_type": "chain", "honeyhive_metadata.run_id": run_id,
                  "honeyhive_metadata.datapoint_id": datapoint,
                  "honeyhive_metrics.accuracy": score}
    span = {"traceId": uuid.uuid4().hex, "spanId": uuid.uuid4().hex[:16], "parentSpanId": None,
            "name": "answer", "kind": "SPAN_KIND_INTERNAL",
            "startTimeUnixNano": str(now - 5_000_000), "endTimeUnixNano": str(now),
            "attributes": [{"key": k, "value": {"stringValue": v} if isinstance(v, str)
                            else {"doubleValue": v}} for k, v in attributes.items()],
            "events": [], "status": {"code": "STATUS_CODE_UNSET"}}
    return {"resourceSpans": [{"resource": {}, "scopeSpans": [
        {"scope": {"name": "honeyhive.1"}, "spans": [span]}]}]}


async def test_result_read_right_after_evaluate_exported_its_spans_includes_their_scores(
    product: Product, nats_server: NatsServer, tmp_path: Path,
) -> None:
    """``evaluate()`` reads the result the moment it closed the run: the spans it exported
    just before are acknowledged (in JetStream) but not necessarily stored yet. The result
    waits for the writers to store what the project sent before it (it used to be computed
    at once, so the SDK's summary came back without the scores)."""
    settings = ApiarySettings(data_dir=tmp_path, writer_flush_interval_s=0.05)
    nc = await connect(nats_server.url, name="late-writer")
    await ensure_topology(nc.jetstream(), settings)
    writer = WriterLoop(js=nc.jetstream(), store=DirectStoreClient(product.store),
                        objects=LocalObjectStore(tmp_path / "objects"), settings=settings,
                        name="late-writer")
    run_id, session = str(uuid.uuid4()), str(uuid.uuid4())
    await _open_run(product, run_id=run_id)
    exported = await product.call("POST", "/opentelemetry/v1/traces",
                                  json=_scored_span(session, run_id, "dp1", 0.75))
    assert exported.status_code == 200, exported.text
    await product.ok("PUT", f"/v1/runs/{run_id}",
                     json={"status": "completed", "event_ids": [session]})

    async def writer_starting_late() -> None:
        await asyncio.sleep(0.5)  # the span waits in JetStream while the result is asked for
        await writer.run()
    task = asyncio.create_task(writer_starting_late())
    try:
        result = await _result(product, run_id)
    finally:
        writer.stop()
        await task
        await nc.close()
    assert _detail(result, "accuracy")["values"] == [0.75]
    assert [(d["session_id"], d["datapoint_id"]) for d in result["datapoints"]] == [
        (session, "dp1")]
    assert result["warnings"] == []
