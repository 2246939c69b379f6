"""A HoneyHive SDK user's program, run by tests/test_honeyhive_sdk.py in a process of its own
(the SDK's tracer instruments the whole process it runs in).

``python _honeyhive_sdk_user.py <scenario>``, scenario one of ``tracing`` (the export mode
comes from ``HH_OTLP_PROTOCOL``), ``evaluate-external``, ``datasets``. The server and key
come from ``HH_API_URL`` and ``HH_API_KEY``. The last line on stdout is a JSON report of
what the SDK was given and what it returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import sys
import warnings
from typing import Any

warnings.simplefilter("ignore")

URL, KEY = os.environ["HH_API_URL"], os.environ["HH_API_KEY"]
MODE = os.environ.get("HH_OTLP_PROTOCOL", "http/json").rsplit("/", 1)[-1]
QUERY = "héllo wörld ✓"
report: dict[str, Any] = {}


def tracing() -> None:
    from honeyhive import HoneyHiveTracer, enrich_span, trace

    tracer = HoneyHiveTracer.init(api_key=KEY, server_url=URL, project="apiary-sdk",
                                  source=f"sdk-{MODE}", session_name=f"sdk-session-{MODE}")

    @trace(event_type="tool", event_name="retrieve")
    def retrieve(query: str, top_k: int = 2) -> list[dict[str, Any]]:
        enrich_span(metadata={"index": "faq", "mode": "span-level"}, metrics={"hits": top_k})
        return [{"doc": f"{query}-{i}", "score": 0.5 + i} for i in range(top_k)]

    @trace(event_type="model", event_name="generate")
    def generate(prompt: str, temperature: float = 0.25) -> dict[str, Any]:
        enrich_span(
            metadata={"model_family": "fake", "nested": {"a": 1, "b": [1, 2]}, "empty": "",
                      "no": False},
            metrics={"latency_ms": 12.5, "tokens": 42, "zero": 0},
            feedback={"thumbs_up": True, "comment": f"good {MODE}", "flag": False},
            inputs={"messages": [{"role": "user", "content": prompt}]},
            outputs={"content": "hi there"},
            config={"model": "gpt-fake", "temperature": temperature},
            user_properties={"user_id": "u-span", "plan": "pro"},
        )
        return {"content": f"answer to {prompt}",
                "usage": {"prompt_tokens": 3, "completion_tokens": 2}}

    @trace(event_type="tool", event_name="rerank")
    async def rerank(n: int) -> dict[str, int]:
        await asyncio.sleep(0)
        return {"kept": n - 1}

    @trace(event_type="tool", event_name="explode")
    def explode(x: int) -> None:
        raise ValueError(f"kaboom {x}")

    @trace(event_type="chain", event_name="pipeline")
    def pipeline(query: str) -> str:
        docs = retrieve(query)
        out = generate(f"{query} with {len(docs)} docs")
        asyncio.run(rerank(len(docs)))
        with contextlib.suppress(ValueError):
            explode(7)
        return str(out["content"])

    answer = pipeline(QUERY)
    tracer.enrich_session(
        metadata={"env": "test", "mode": MODE, "step": 1},
        inputs={"q": QUERY},
        outputs={"answer": answer},
        config={"app_version": "1.2.3"},
        feedback={"rating": 5},
        metrics={"cost": 0.01},
        user_properties={"user_id": "u-123", "tier": "gold"},
    )
    tracer.enrich_session(metadata={"step": 2}, feedback={"helpful": True},
                          metrics={"cost": 0.02, "turns": 3})
    try:  # an exception escaping a root span: its error span starts a trace of its own
        explode(9)
    except ValueError:
        report["escaped"] = True
    tracer.force_flush()
    report.update(session_id=tracer.session_id, answer=answer, query=QUERY,
                  exporters=sorted({type(o).__name__ for o in gc.get_objects()
                                    if type(o).__name__ in ("OTLPJSONExporter",
                                                            "OTLPSpanExporter")}))
    tracer.shutdown()


def answer(datapoint: dict[str, Any]) -> dict[str, Any]:
    from honeyhive import trace

    @trace(event_type="tool", event_name="reverse")
    def reverse(text: str) -> str:
        return text[::-1]

    question = datapoint["inputs"]["question"]
    return {"answer": reverse(question), "length": len(question)}


def exact_match(outputs: dict[str, Any], inputs: dict[str, Any],
                ground_truth: dict[str, Any]) -> dict[str, Any]:
    return {"score": float(outputs["answer"] == ground_truth["answer"]),
            "explanation": "string equality"}


def is_short(outputs: dict[str, Any], inputs: dict[str, Any],
             ground_truth: dict[str, Any]) -> bool:
    return bool(outputs["length"] < 5)


def _summary(result: Any) -> dict[str, Any]:
    return {"run_id": result.run_id, "status": result.status, "success": result.success,
            "passed": result.passed, "failed": result.failed,
            "metrics": result.metrics.model_dump(),
            "datapoints": [d.model_dump() for d in result.datapoints]}


def evaluate_external() -> None:
    from honeyhive import evaluate

    dataset = [{"inputs": {"question": "abc"}, "ground_truth": {"answer": "cba"}},
               {"inputs": {"question": "hello world"}, "ground_truth": {"answer": "nope"}}]
    result = evaluate(function=answer, dataset=dataset, evaluators=[exact_match, is_short],
                      api_key=KEY, server_url=URL, name="sdk-external", max_workers=2,
                      print_results=False)
    report.update(_summary(result))


def _dump(items: Any) -> list[dict[str, Any]]:
    return [item.model_dump() for item in items]


def datasets() -> None:
    from honeyhive import HoneyHive, evaluate
    from honeyhive.models import (
        AddDatapointsToDatasetRequest,
        CreateDatapointRequest,
        CreateDatasetRequest,
        DatapointMapping,
        UpdateDatapointRequest,
        UpdateDatasetRequest,
    )

    client = HoneyHive(api_key=KEY, server_url=URL)
    crud: dict[str, Any] = {}
    report["crud"] = crud
    created = client.datasets.create(CreateDatasetRequest(name="sdk-crud", description="d1"))
    dataset = crud["dataset_id"] = created.result.insertedId
    crud["inserted"] = created.inserted
    point = crud["datapoint_id"] = client.datapoints.create(CreateDatapointRequest(
        inputs={"q": "hi"}, ground_truth={"a": "hello"},
        history=[{"role": "user", "content": "x"}], metadata={"src": "sdk"},
        linked_datasets=[dataset])).result.insertedIds[0]
    added = client.datasets.add_datapoints(dataset, AddDatapointsToDatasetRequest(
        data=[{"q": "what?", "a": "that", "chat": [{"role": "user", "content": "hey"}],
               "extra": 1}],
        mapping=DatapointMapping(inputs=["q"], ground_truth=["a"], history=["chat"])))
    crud["added"] = {"inserted": added.inserted, "ids": added.datapoint_ids}
    crud["list_all"] = _dump(client.datasets.list().datasets)
    crud["list_by_id"] = _dump(client.datasets.list(dataset_id=dataset).datasets)
    crud["list_by_name"] = _dump(client.datasets.list(name="sdk-crud").datasets)
    crud["get"] = _dump(client.datapoints.get(point).datapoint)
    crud["get_added"] = _dump(client.datapoints.get(added.datapoint_ids[0]).datapoint)
    crud["updated"] = client.datasets.update(UpdateDatasetRequest(
        dataset_id=dataset, name="sdk-crud-2", description="d2")).result.model_dump()
    crud["point_updated"] = client.datapoints.update(point, UpdateDatapointRequest(
        inputs={"q": "hi again"}, metadata={"src": "sdk", "v": 2})).model_dump()
    crud["get_after_update"] = _dump(client.datapoints.get(point).datapoint)
    crud["list_points"] = _dump(client.datapoints.list(
        datapoint_ids=[point, *added.datapoint_ids]).datapoints)
    crud["list_points_by_dataset"] = _dump(client.datapoints.list(
        dataset_name="sdk-crud-2").datapoints)
    crud["removed"] = client.datasets.remove_datapoint(
        dataset, added.datapoint_ids[0]).model_dump()
    crud["list_after_remove"] = _dump(client.datasets.list(dataset_id=dataset).datasets)
    crud["point_deleted"] = client.datapoints.delete(point).model_dump()
    try:
        client.datapoints.get(point)
    except Exception as exc:
        crud["get_deleted"] = {"error": type(exc).__name__,
                               "status": getattr(exc, "status_code", None)}
    crud["deleted"] = client.datasets.delete(dataset).model_dump()
    crud["list_after_delete"] = _dump(client.datasets.list(dataset_id=dataset).datasets)

    # evaluate() on a dataset that lives in Apiary.
    golden = client.datasets.create(CreateDatasetRequest(name="sdk-golden")).result.insertedId
    ids = client.datasets.add_datapoints(golden, AddDatapointsToDatasetRequest(
        data=[{"question": "abc", "expected": "cba"}, {"question": "hello", "expected": "x"},
              {"question": "xy", "expected": "yx"}],
        mapping=DatapointMapping(inputs=["question"], ground_truth=["expected"]))
    ).datapoint_ids

    def answer_golden(datapoint: dict[str, Any]) -> dict[str, Any]:
        question = datapoint["inputs"]["question"]
        return {"answer": question[::-1], "length": len(question)}

    def exact(outputs: dict[str, Any], inputs: dict[str, Any],
              ground_truth: dict[str, Any]) -> bool:
        return bool(outputs["answer"] == ground_truth["expected"])

    def length(outputs: dict[str, Any], inputs: dict[str, Any],
               ground_truth: dict[str, Any]) -> float:
        return float(outputs["length"])

    result = evaluate(function=answer_golden, dataset_id=golden, evaluators=[exact, length],
                      api_key=KEY, server_url=URL, name="sdk-golden", max_workers=2,
                      print_results=False)
    report["golden"] = {"dataset_id": golden, "datapoint_ids": ids, **_summary(result)}


if __name__ == "__main__":
    {"tracing": tracing, "evaluate-external": evaluate_external,
     "datasets": datasets}[sys.argv[1]]()
    print(json.dumps(report, default=str))
