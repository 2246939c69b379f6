"""Evaluation on real Ray, as ``apiary up`` runs it: :class:`ApiaryNode` with both planes,
the writers, the evaluator pool under its scaler, the real sandbox, and the local
OpenAI-compatible judge server as the LLM endpoint.

One node for the module (Ray starts once). Scaling is tuned to be visible within seconds:
up after 1 s of backlog, down after 3 s without.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from _openai_server import FakeOpenAI

from apiary._private.ports import spare_port
from apiary.actors.clickhouse import CLICKHOUSE_ACTOR_NAME
from apiary.control import admin
from apiary.settings import ApiarySettings
from apiary.startup.node import ApiaryNode

pytestmark = pytest.mark.ray

# proxy:use: LLM-judge metrics spend the workspace's provider key
# (apiary.dataplane.evaluation.routes).
PERMISSIONS = ["events:read", "events:write", "evaluators:read", "evaluators:write",
               "proxy:use"]




@pytest.fixture(scope="module")
def node(judge_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[ApiaryNode]:
    data_dir: Path = tmp_path_factory.mktemp("apiary-evaluation-node")
    settings = ApiarySettings(
        data_dir=data_dir, port=spare_port(), ray_num_cpus=4, writer_flush_interval_s=0.1,
        writer_ack_wait_s=6.0, evaluator_min=1, evaluator_max=2, evaluator_concurrency=2,
        evaluator_backlog_per_actor=4, scale_interval_s=0.5, scale_up_delay_s=1.0,
        scale_down_delay_s=3.0, evaluator_definitions_ttl_s=1.0,
        evaluator_judge_url=judge_server.url)
    node = ApiaryNode(settings)
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def api(node: ApiaryNode) -> Iterator[httpx.Client]:
    assert node.connection is not None
    key = admin.keys_create(node.settings, project_id=node.connection.project_id,
                            name="evaluation", permissions=PERMISSIONS)["api_key"]
    with httpx.Client(base_url=node.connection.url, timeout=30,
                      headers={"authorization": f"Bearer {key}"}) as client:
        yield client


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def _wait(condition: Callable[[], bool], wait_s: float, what: str) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what} not reached within {wait_s} s")


def _metrics(api: httpx.Client, event_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/events/{event_id}")
    return dict(response.json()["event"]["metrics"]) if response.status_code == 200 else {}


def _send(api: httpx.Client, contents: list[str], name: str) -> list[str]:
    events = [{"event_type": "model", "event_name": name, "inputs": {"q": "?"},
               "outputs": {"content": c}} for c in contents]
    return list(_ok(api.post("/v1/events/batch", json={"events": events}))["event_ids"])


def _score_patches(project_id: str, event_ids: list[str], metric: str) -> list[int]:
    """Distinct stored score patches of ``metric`` per event (ClickHouse, via its owner)."""
    owner = ray.get_actor(CLICKHOUSE_ACTOR_NAME, namespace="apiary")
    patches = ray.get(owner.call.remote("event_patches", (project_id, event_ids), {}))
    return [sum(1 for p in patches.get(i, []) if metric in p.get("metrics", {}))
            for i in event_ids]


def _llm_metric(api: httpx.Client) -> tuple[str, str]:
    name = f"judge_{uuid.uuid4().hex[:6]}"
    created = _ok(api.post("/v1/metrics", json={
        "name": name, "type": "LLM", "return_type": "float", "enabled_in_prod": False,
        "criteria": "Is {{outputs.content}} about France? event={{event_id}}"}))
    return name, str(created["metric_id"])


def test_apiary_up_runs_online_python_metrics(node: ApiaryNode, api: httpx.Client) -> None:
    _wait(lambda: node.pool_status()[0]["ready"] == 1, 60, "the first evaluator started")
    (status,) = node.pool_status()
    assert (status["pool"], status["size"], status["ready"]) == ("evaluators", 1, 1)
    name = f"length_{uuid.uuid4().hex[:6]}"
    _ok(api.post("/v1/metrics", json={
        "name": name, "type": "PYTHON", "return_type": "float", "enabled_in_prod": True,
        "sampling_percentage": 100,
        "filters": {"filterArray": [{"field": "event_name", "operator": "is",
                                     "value": "online"}]},
        "criteria": "def evaluate(outputs):\n    return len(outputs['content'])\n"}))
    time.sleep(1.2)  # the writers' definitions TTL
    started = time.monotonic()
    ids = _send(api, ["hello", "hello world"], "online")
    _wait(lambda: all(name in _metrics(api, i) for i in ids), 60, "online scores")
    assert time.monotonic() - started < 30
    assert [_metrics(api, i)[name] for i in ids] == [5, 11]


def test_the_evaluator_pool_follows_the_backlog_and_scores_each_task_once(
        node: ApiaryNode, api: httpx.Client, judge_server: FakeOpenAI) -> None:
    judge_server.reset()
    judge_server.delay_s = 0.5  # 80 tasks, 2 at a time: 20 s of work for one evaluator
    name, metric_id = _llm_metric(api)
    batch = f"scale-{uuid.uuid4().hex[:6]}"
    ids = _send(api, [f"answer {i} France" for i in range(80)], batch)
    _wait(lambda: all(_metrics(api, i) is not None and api.get(f"/v1/events/{i}")
                      .status_code == 200 for i in ids[-1:]), 30, "events stored")
    queued = _ok(api.post("/v1/evaluations", json={
        "metric_id": metric_id, "filters": [{"field": "event_name", "operator": "is",
                                             "value": batch}]}))
    assert queued["queued"] == 80
    sizes: list[int] = []

    def all_scored() -> bool:
        sizes.append(node.pool_status()[0]["size"])
        return all(name in _metrics(api, i) for i in ids[::8]) and \
            node.pool_status()[0]["last"].get("backlog", 1) == 0
    _wait(all_scored, 120, "all tasks scored")
    _wait(lambda: node.pool_status()[0]["size"] == 1, 30, "pool back to its minimum")
    assert max(sizes) == 2, sizes
    assert all(_metrics(api, i)[name] == 1.0 for i in ids)
    calls = sorted(judge_server.per_event[i] for i in ids)
    assert calls == [1] * 80, calls  # judged once each
    assert _score_patches(node.connection.project_id, ids, name) == [1] * 80  # type: ignore[union-attr]
    (status,) = node.pool_status()
    drained = status["retired"]
    assert drained, status
    assert sum(r["evaluations"] for r in drained) > 0, status  # it worked, drained, left
    assert all(r["in_flight"] == 0 for r in drained), status


def test_an_evaluator_killed_mid_task_loses_and_duplicates_nothing(
        node: ApiaryNode, api: httpx.Client, judge_server: FakeOpenAI) -> None:
    judge_server.reset()
    judge_server.delay_s = 1.0
    name, metric_id = _llm_metric(api)
    batch = f"kill-{uuid.uuid4().hex[:6]}"
    ids = _send(api, [f"answer {i} France" for i in range(8)], batch)
    _wait(lambda: api.get(f"/v1/events/{ids[-1]}").status_code == 200, 30, "events stored")
    _ok(api.post("/v1/evaluations", json={
        "metric_id": metric_id, "filters": [{"field": "event_name", "operator": "is",
                                             "value": batch}]}))
    _wait(lambda: len(judge_server.requests) >= 1, 30, "a task in progress")
    (status,) = node.pool_status()
    victim = ray.get_actor(status["actors"][0], namespace="apiary")
    ray.kill(victim, no_restart=False)  # Ray restarts it; what it held is redelivered

    def scored() -> bool:
        node.supervise_once()  # what `apiary up` does every few seconds
        return all(name in _metrics(api, i) for i in ids)
    _wait(scored, 120, "every task scored after the crash")
    assert _score_patches(node.connection.project_id, ids, name) == [1] * 8  # type: ignore[union-attr]
    assert sum(judge_server.per_event[i] for i in ids) >= 8
