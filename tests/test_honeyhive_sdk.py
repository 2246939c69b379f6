"""The unmodified HoneyHive SDK (``honeyhive`` 1.7.0) against a running Apiary: an
``ApiaryNode`` on Ray (what ``apiary up`` runs), one for the module.

The SDK runs as its users run it, in processes of its own (``_honeyhive_sdk_user.py``; its
tracer instruments the whole process): ``HoneyHiveTracer.init`` with nested ``@trace``
chain/model/tool functions, ``enrich_span`` and ``enrich_session``, failing functions, in
JSON and in protobuf export mode; ``evaluate()`` with evaluators on an in-code dataset and
on an Apiary dataset; datasets and datapoints CRUD through its client. Every span,
enrichment and score is then read back through the export API (``POST /v1/events/export``
with the bootstrap key) and the session tree (``GET /v1/sessions/{id}``), and the runs'
results through ``GET /v1/runs/{id}/result``, with the values the SDK sent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from honeyhive._generated.models import LegacyEvent

from apiary._private.ports import spare_port
from apiary.settings import ApiarySettings
from apiary.startup.node import ApiaryNode, Connection

pytestmark = pytest.mark.ray

SDK_USER = Path(__file__).with_name("_honeyhive_sdk_user.py")
#: The SDK processes: scenario and export mode.
RUNS = {"json": ("tracing", "http/json"), "protobuf": ("tracing", "http/protobuf"),
        "external": ("evaluate-external", "http/json"), "datasets": ("datasets", "http/json")}
Events = list[dict[str, Any]]




@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiaryNode]:
    settings = ApiarySettings(data_dir=tmp_path_factory.mktemp("apiary-sdk"),
                              port=spare_port(), ray_num_cpus=2, writer_flush_interval_s=0.2)
    node = ApiaryNode(settings)
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def connection(node: ApiaryNode) -> Connection:
    assert node.connection is not None
    return node.connection


@pytest.fixture(scope="module")
def sdk(connection: Connection, tmp_path_factory: pytest.TempPathFactory
        ) -> dict[str, dict[str, Any]]:
    """Every SDK process's JSON report, by run name: the two tracing ones at once, then the
    two that run ``evaluate()`` (it reads the run's result the moment it closed the run:
    the writers it waits for should not compete with four SDK processes for the CPUs)."""
    work = tmp_path_factory.mktemp("sdk-user")  # not a git repository: no metadata.git
    reports: dict[str, dict[str, Any]] = {}
    for phase in (("json", "protobuf"), ("external", "datasets")):
        started = {}
        try:
            for name in phase:
                scenario, protocol = RUNS[name]
                env = {**os.environ, "HH_API_URL": connection.url,
                       "HH_API_KEY": connection.api_key, "HH_OTLP_PROTOCOL": protocol}
                with (work / f"{name}.out").open("w") as out, \
                        (work / f"{name}.err").open("w") as err:
                    started[name] = subprocess.Popen(
                        [sys.executable, str(SDK_USER), scenario], cwd=work, env=env,
                        stdout=out, stderr=err)
            for name, process in started.items():
                code = process.wait(timeout=120)
                assert code == 0, f"{name}: {(work / f'{name}.err').read_text()[-3000:]}"
                lines = (work / f"{name}.out").read_text().strip().splitlines()
                reports[name] = json.loads(lines[-1])
        finally:
            for process in started.values():
                if process.poll() is None:
                    process.kill()
                    process.wait()
    return reports


def _headers(connection: Connection) -> dict[str, str]:
    return {"authorization": f"Bearer {connection.api_key}"}


def _export(connection: Connection, field: str, value: str) -> Events:
    response = httpx.post(f"{connection.url}/v1/events/export", headers=_headers(connection),
                          json={"filters": [{"field": field, "operator": "is", "value": value,
                                             "type": "string"}], "limit": 500}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["totalEvents"] == body["count"] == len(body["events"])
    for event in body["events"]:
        LegacyEvent(**event)  # what the SDK's own export client validates each event with
    events: Events = body["events"]
    return events


def _wait_for(connection: Connection, field: str, value: str, ready: Callable[[Events], bool]
              ) -> Events:
    """The export of ``field = value`` once ``ready`` holds (at most 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        events = _export(connection, field, value)
        if ready(events):
            return events
        assert time.monotonic() < deadline, json.dumps(events, indent=1)[:5000]
        time.sleep(0.3)


def _get(connection: Connection, path: str, **params: str) -> Any:
    response = httpx.get(f"{connection.url}{path}", headers=_headers(connection),
                         params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _one(events: Events, **fields: Any) -> dict[str, Any]:
    (found,) = [e for e in events if all(e.get(k) == v for k, v in fields.items())]
    return found


def _tree(node: dict[str, Any]) -> dict[str, Any]:
    """A session tree as ``{(type, name, input x): subtree}``."""
    return {(c["event_type"], c["event_name"], (c["inputs"] or {}).get("x")): _tree(c)
            for c in node["children"]}


# --- tracing ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["json", "protobuf"])
def test_traced_functions_and_enrichments_read_back_in_their_session_tree(
    connection: Connection, sdk: dict[str, dict[str, Any]], mode: str,
) -> None:
    report = sdk[mode]
    # The mode really is the one asked for: the SDK's own JSON encoder, or OTel's protobuf.
    assert report["exporters"] == (["OTLPJSONExporter"] if mode == "json"
                                   else ["OTLPSpanExporter"])
    session, query, answer = report["session_id"], report["query"], report["answer"]
    prompt = f"{query} with 2 docs"
    assert answer == f"answer to {prompt}"
    def ready(found: Events) -> bool:  # every span, and both enrich_session calls merged
        roots = [e for e in found if e["event_type"] == "session"]
        return len(found) >= 9 and bool(roots) and roots[0]["metadata"].get("step") == 2
    events = _wait_for(connection, "session_id", session, ready)
    assert len(events) == 9
    assert {e["session_id"] for e in events} == {session}
    assert {e["source"] for e in events} == {f"sdk-{mode}"}

    # The session: started by HoneyHiveTracer.init, enriched twice by enrich_session
    # (inputs go to metadata.inputs, as the SDK sends them; the second call merges).
    root = _one(events, event_type="session")
    assert root["event_id"] == session
    assert root["event_name"] == f"sdk-session-{mode}"
    assert root["parent_id"] is None
    assert root["metadata"] == {"env": "test", "mode": mode, "step": 2, "inputs": {"q": query}}
    assert root["outputs"] == {"answer": answer}
    assert root["config"] == {"app_version": "1.2.3"}
    assert root["feedback"] == {"rating": 5, "helpful": True}
    assert root["metrics"] == {"cost": 0.02, "turns": 3}
    assert root["user_properties"] == {"user_id": "u-123", "tier": "gold"}

    pipeline = _one(events, event_name="pipeline")
    assert pipeline["event_type"] == "chain"
    assert pipeline["parent_id"] == session
    assert pipeline["inputs"] == {"query": query}
    assert pipeline["outputs"] == {"result": answer}
    assert pipeline["error"] is None
    assert pipeline["duration"] > 0

    retrieve = _one(events, event_name="retrieve")
    assert retrieve["event_type"] == "tool"
    assert retrieve["parent_id"] == pipeline["event_id"]
    assert retrieve["inputs"] == {"query": query, "top_k": 2}
    assert retrieve["outputs"] == {"result": [{"doc": f"{query}-0", "score": 0.5},
                                              {"doc": f"{query}-1", "score": 1.5}]}
    assert retrieve["metrics"] == {"hits": 2}
    assert retrieve["metadata"]["index"] == "faq"
    # Its own value wins over what it may inherit from the session ("mode": <mode>).
    assert retrieve["metadata"]["mode"] == "span-level"

    # enrich_span with every field, inside the model function.
    generate = _one(events, event_name="generate")
    assert generate["event_type"] == "model"
    assert generate["parent_id"] == pipeline["event_id"]
    assert generate["inputs"] == {"prompt": prompt, "temperature": 0.25,
                                  "messages": [{"role": "user", "content": prompt}]}
    assert generate["outputs"] == {"content": "hi there", "result": {
        "content": answer, "usage": {"prompt_tokens": 3, "completion_tokens": 2}}}
    assert generate["config"] == {"model": "gpt-fake", "temperature": 0.25}
    assert generate["metrics"] == {"latency_ms": 12.5, "tokens": 42, "zero": 0}
    assert isinstance(generate["metrics"]["tokens"], int)
    assert generate["feedback"] == {"thumbs_up": True, "comment": f"good {mode}",
                                    "flag": False}
    assert {k: generate["metadata"][k] for k in ("model_family", "nested", "empty", "no")} == {
        "model_family": "fake", "nested": {"a": 1, "b": [1, 2]}, "empty": "", "no": False}
    assert generate["user_properties"]["user_id"] == "u-span"
    assert generate["user_properties"]["plan"] == "pro"
    assert generate["error"] is None
    assert pipeline["start_time"] <= generate["start_time"] <= generate["end_time"] <= \
        pipeline["end_time"]

    rerank = _one(events, event_name="rerank")  # an async function
    assert (rerank["event_type"], rerank["parent_id"]) == ("tool", pipeline["event_id"])
    assert (rerank["inputs"], rerank["outputs"]) == ({"n": 2}, {"result": {"kept": 1}})

    # A function that raised: its span (error status) and the SDK's `<name>_error` span.
    explode = _one(events, event_name="explode", inputs={"x": 7})
    assert explode["event_type"] == "tool"
    assert explode["parent_id"] == pipeline["event_id"]
    assert "kaboom 7" in explode["error"]
    assert explode["outputs"] == {}
    assert explode["metadata"]["exceptions"][0]["type"] == "ValueError"
    explode_error = _one(events, event_name="explode_error", parent_id=pipeline["event_id"])
    assert explode_error["error"] == "kaboom 7"
    assert explode_error["metadata"]["error_type"] == "ValueError"
    # Escaping a root span: both spans are roots of the session, the error span in a trace
    # of its own.
    assert report["escaped"] is True
    escaped = _one(events, event_name="explode", inputs={"x": 9})
    assert escaped["parent_id"] == session
    assert "kaboom 9" in escaped["error"]
    escaped_error = _one(events, event_name="explode_error", error="kaboom 9")
    assert escaped_error["parent_id"] == session
    assert escaped_error["trace_id"] != escaped["trace_id"] != pipeline["trace_id"]

    tree = _get(connection, f"/v1/sessions/{session}")
    assert tree["event_count"] == 9
    assert tree["session"]["event_id"] == session
    assert tree["session"]["synthetic"] is False
    assert _tree(tree["session"]) == {
        ("chain", "pipeline", None): {
            ("tool", "retrieve", None): {}, ("model", "generate", None): {},
            ("tool", "rerank", None): {}, ("tool", "explode", 7): {},
            ("tool", "explode_error", None): {}},
        ("tool", "explode", 9): {}, ("tool", "explode_error", None): {}}


# --- evaluate() ---------------------------------------------------------------------------


def _details(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["metric_name"]: d for d in result["metrics"]["details"]}


def _run_events(connection: Connection, run_id: str, datapoints: int) -> Events:
    """The run's events once every datapoint's session is enriched and its chain scored."""
    def ready(events: Events) -> bool:
        sessions = [e for e in events if e["event_type"] == "session"]
        chains = [e for e in events if e["event_type"] == "chain" and e["metrics"]]
        return (len(sessions) == len(chains) == datapoints
                and all(s["outputs"] and s["feedback"] for s in sessions))
    return _wait_for(connection, "metadata.run_id", run_id, ready)


def test_evaluate_on_an_external_dataset(connection: Connection,
                                         sdk: dict[str, dict[str, Any]]) -> None:
    report = sdk["external"]
    run_id = report["run_id"]
    events = _run_events(connection, run_id, 2)
    assert len(events) == 6  # per datapoint: session, the function's chain, its tool
    sessions = {e["inputs"]["question"]: e for e in events if e["event_type"] == "session"}
    assert set(sessions) == {"abc", "hello world"}
    dataset_id = sessions["abc"]["metadata"]["dataset_id"]
    assert dataset_id.startswith("EXT-")
    datapoint = {q: s["metadata"]["datapoint_id"] for q, s in sessions.items()}
    for question, truth, reversed_, score, short in (("abc", "cba", "cba", 1.0, True),
                                                     ("hello world", "nope", "dlrow olleh",
                                                      0.0, False)):
        session = sessions[question]
        assert session["event_id"] == session["session_id"]
        assert session["event_name"] == "sdk-external"
        assert session["source"] == "evaluation"
        assert session["metadata"] == {"run_id": run_id, "dataset_id": dataset_id,
                                       "datapoint_id": datapoint[question]}
        assert datapoint[question].startswith("EXT-")
        # evaluate()'s PUT /events on the session: the output and the ground truth.
        assert session["outputs"] == {"answer": reversed_, "length": len(question)}
        assert session["feedback"] == {"ground_truth": {"answer": truth}}
        chain = _one(events, event_type="chain", session_id=session["session_id"])
        assert chain["event_name"] == "answer"
        assert chain["parent_id"] == session["event_id"]
        # The function's span: evaluate() passes it the whole datapoint, which the SDK
        # sends as a JSON string (Apiary decodes JSON-encoded arguments back).
        assert chain["inputs"] == {"dp": {"inputs": {"question": question},
                                          "ground_truth": {"answer": truth}}}
        assert chain["outputs"] == {"result": {"answer": reversed_, "length": len(question)}}
        # The evaluators' scores, on the function's span.
        assert chain["metrics"] == {"exact_match": score,
                                    "exact_match_explanation": "string equality",
                                    "is_short": short}
        assert {k: chain["metadata"][k] for k in ("run_id", "dataset_id", "datapoint_id")} == \
            session["metadata"]
        tool = _one(events, event_type="tool", session_id=session["session_id"])
        assert (tool["event_name"], tool["parent_id"]) == ("reverse", chain["event_id"])
        assert (tool["inputs"], tool["outputs"]) == ({"text": question}, {"result": reversed_})

    result = _get(connection, f"/v1/runs/{run_id}/result", aggregate_function="average")
    assert result["status"] == "completed"
    assert result["success"] is True
    details = _details(result)
    assert set(details) == {"exact_match", "is_short"}
    assert (details["exact_match"]["event_name"], details["exact_match"]["event_type"]) == (
        "answer", "chain")
    assert details["exact_match"]["aggregate"] == pytest.approx(0.5)
    assert sorted(details["exact_match"]["values"]) == [0.0, 1.0]
    assert details["is_short"]["metric_type"] == "boolean"
    assert details["is_short"]["datapoints"] == {"passed": [datapoint["abc"]],
                                                 "failed": [datapoint["hello world"]]}
    assert result["passed"] == [datapoint["abc"]]
    assert result["failed"] == [datapoint["hello world"]]
    assert {d["datapoint_id"]: d["session_id"] for d in result["datapoints"]} == {
        datapoint[q]: s["session_id"] for q, s in sessions.items()}
    run = result["run_object"]
    assert run["name"] == "sdk-external"
    assert run["metadata"]["offline_dataset_id"] == dataset_id
    assert sorted(run["event_ids"]) == sorted(s["session_id"] for s in sessions.values())
    assert run["configuration"]["evaluators"] == ["exact_match", "is_short"]
    # What evaluate() itself returned: the same result, scores included.
    assert (report["status"], report["success"]) == ("completed", True)
    assert (report["passed"], report["failed"]) == (result["passed"], result["failed"])
    assert {n: d["aggregate"] for n, d in _details(report).items()} == {
        n: d["aggregate"] for n, d in details.items()}
    assert len(report["datapoints"]) == 2


def test_evaluate_on_an_apiary_dataset(connection: Connection,
                                       sdk: dict[str, dict[str, Any]]) -> None:
    report = sdk["datasets"]["golden"]
    run_id, dataset_id = report["run_id"], report["dataset_id"]
    ids = dict(zip(("abc", "hello", "xy"), report["datapoint_ids"], strict=True))
    expected = {"abc": "cba", "hello": "x", "xy": "yx"}
    events = _run_events(connection, run_id, 3)
    sessions = {e["inputs"]["question"]: e for e in events if e["event_type"] == "session"}
    assert set(sessions) == set(ids)
    for question, session in sessions.items():
        assert session["metadata"] == {"run_id": run_id, "dataset_id": dataset_id,
                                       "datapoint_id": ids[question]}
        assert session["outputs"] == {"answer": question[::-1], "length": len(question)}
        assert session["feedback"] == {"ground_truth": {"expected": expected[question]}}
        chain = _one(events, event_type="chain", session_id=session["session_id"])
        assert chain["event_name"] == "answer_golden"
        assert chain["parent_id"] == session["event_id"]
        assert chain["metrics"] == {"exact": question[::-1] == expected[question],
                                    "length": float(len(question))}

    result = _get(connection, f"/v1/runs/{run_id}/result", aggregate_function="average")
    details = _details(result)
    assert details["exact"]["aggregate"] == pytest.approx(2 / 3)
    assert details["exact"]["metric_type"] == "boolean"
    assert details["length"]["aggregate"] == pytest.approx((3 + 5 + 2) / 3)
    assert sorted(details["length"]["values"]) == [2.0, 3.0, 5.0]
    assert sorted(result["passed"]) == sorted([ids["abc"], ids["xy"]])
    assert result["failed"] == [ids["hello"]]
    maximum = _get(connection, f"/v1/runs/{run_id}/result", aggregate_function="max")
    assert _details(maximum)["length"]["aggregate"] == 5.0
    run = result["run_object"]
    assert (run["status"], run["dataset_id"], run["dataset_name"]) == (
        "completed", dataset_id, "sdk-golden")
    assert run["dataset_version_id"]
    assert sorted(run["datapoint_ids"]) == sorted(ids.values())
    assert (report["status"], report["success"]) == ("completed", True)
    assert (sorted(report["passed"]), report["failed"]) == (sorted(result["passed"]),
                                                            result["failed"])
    assert {n: d["aggregate"] for n, d in _details(report).items()} == {
        n: d["aggregate"] for n, d in details.items()}


# --- datasets and datapoints ----------------------------------------------------------------


def test_datasets_and_datapoints_crud_through_the_sdk_client(
    connection: Connection, sdk: dict[str, dict[str, Any]],
) -> None:
    crud = sdk["datasets"]["crud"]
    dataset, point, (added,) = crud["dataset_id"], crud["datapoint_id"], crud["added"]["ids"]
    assert crud["inserted"] is True
    assert crud["added"]["inserted"] is True
    for listed in (crud["list_all"], crud["list_by_id"], crud["list_by_name"]):
        (found,) = [d for d in listed if d["id"] == dataset]
        assert (found["name"], found["description"]) == ("sdk-crud", "d1")
        assert found["datapoints"] == [point, added]
    assert [d["id"] for d in crud["list_by_name"]] == [dataset]
    (got,) = crud["get"]
    assert (got["id"], got["inputs"], got["ground_truth"]) == (point, {"q": "hi"},
                                                               {"a": "hello"})
    assert (got["history"], got["metadata"]) == ([{"role": "user", "content": "x"}],
                                                 {"src": "sdk"})
    assert got["linked_datasets"] == [dataset]
    # add_datapoints maps the row's fields; the unmapped ones become metadata.
    (mapped,) = crud["get_added"]
    assert (mapped["inputs"], mapped["ground_truth"], mapped["history"], mapped["metadata"]) \
        == ({"q": "what?"}, {"a": "that"}, [{"role": "user", "content": "hey"}], {"extra": 1})
    assert (crud["updated"]["id"], crud["updated"]["name"], crud["updated"]["description"]) \
        == (dataset, "sdk-crud-2", "d2")
    assert crud["point_updated"] == {"updated": True, "result": {"modifiedCount": 1}}
    (updated,) = crud["get_after_update"]
    assert (updated["inputs"], updated["metadata"], updated["ground_truth"]) == (
        {"q": "hi again"}, {"src": "sdk", "v": 2}, {"a": "hello"})
    assert {d["id"] for d in crud["list_points"]} == {point, added}
    assert {d["id"] for d in crud["list_points_by_dataset"]} == {point, added}
    assert crud["removed"]["dereferenced"] is True
    (after_remove,) = crud["list_after_remove"]
    assert after_remove["datapoints"] == [point]
    assert crud["point_deleted"] == {"deleted": True}
    assert crud["get_deleted"] == {"error": "HTTPException", "status": 404}
    assert crud["deleted"] == {"result": {"id": dataset}}
    assert crud["list_after_delete"] == []
    # Read back over HTTP: the deleted dataset is gone, the other one is there.
    datasets = _get(connection, "/v1/datasets")["datasets"]
    assert dataset not in {d["id"] for d in datasets}
    golden = sdk["datasets"]["golden"]
    (kept,) = [d for d in datasets if d["id"] == golden["dataset_id"]]
    assert kept["datapoints"] == golden["datapoint_ids"]
