"""Online evaluators and evaluation requests end to end, on real servers without Ray.

A real control plane (uvicorn, its own SQLite cpdb) holds the metrics; the data plane's
app runs in-process with the authenticator ``apiary up`` gives it, over the session's
nats-server and chDB; a real writer loop and a real evaluator loop (real sandbox, the
local OpenAI-compatible judge server) run beside it. Metrics are defined through the
data plane's HoneyHive API (``/v1/metrics``), events sent through ``/v1/events/batch``,
scores read back through ``/v1/events/{id}`` and ``/v1/events/export``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from _fresh_topology import fresh_topology, until
from _openai_server import FakeOpenAI
from _owner import owner_of_two_projects, served_control_plane

from apiary.dataplane.app import create_app
from apiary.dataplane.auth import control_plane_authenticator
from apiary.dataplane.evaluation.judge import OpenAIJudgeClient
from apiary.dataplane.evaluation.loop import EvaluatorLoop
from apiary.dataplane.evaluation.online import trigger_for
from apiary.dataplane.evaluation.sandbox import SandboxLimits
from apiary.dataplane.evaluation.scoring import Scorer
from apiary.dataplane.evaluation.tasks import sampled
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.dataplane.writer import WriterLoop
from apiary.objects import LocalObjectStore
from apiary.queue import NatsServer, connect
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

ISSUER = "http://cp.evaluation.test/cp"
DP_ID = "dp-evaluation"
PASSWORD = "a long enough password 42"
# proxy:use: LLM-judge metrics spend the workspace's provider key
# (apiary.dataplane.evaluation.routes).
EVERYTHING = ["events:read", "events:write", "evaluators:read", "evaluators:write",
              "datasets:read", "datasets:write", "proxy:use"]
WORD_COUNT = """
def evaluate(event):
    words = len(str(event["outputs"].get("content", "")).split())
    return {"score": words, "explanation": "words in the answer", "long": words > 3}
"""


@dataclass
class World:
    dp: httpx.AsyncClient
    context: DataPlaneContext
    store: EventStore
    writer: WriterLoop
    evaluator: EvaluatorLoop
    projects: dict[str, str]
    keys: dict[str, str]

    async def call(self, method: str, path: str, who: str = "a", **kw: Any) -> httpx.Response:
        return await self.dp.request(method, path, **kw,
                                     headers={"authorization": f"Bearer {self.keys[who]}"})

    async def ok(self, method: str, path: str, who: str = "a", **kw: Any) -> Any:
        response = await self.call(method, path, who, **kw)
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()

    async def send(self, events: list[dict[str, Any]], who: str = "a") -> list[str]:
        answer = await self.ok("POST", "/v1/events/batch", who, json={"events": events})
        return list(answer["event_ids"])

    async def event(self, event_id: str, who: str = "a") -> dict[str, Any]:
        response = await self.call("GET", f"/v1/events/{event_id}", who)
        return dict(response.json()["event"]) if response.status_code == 200 else {}

    async def scored(self, event_id: str, key: str, wait_s: float = 30.0) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def has() -> bool:
            nonlocal found
            found = await self.event(event_id)
            return key in found.get("metrics", {})
        await until(has, wait_s, f"{key} on {event_id}")
        return found

    async def settled(self) -> None:
        """Every event written, every task scored and every score written."""
        js = self.context.js

        async def idle() -> bool:
            for stream, consumer in (("events", "writers"), ("evaluation", "evaluators"),
                                     ("events", "writers")):
                info = await js.consumer_info(stream, consumer)
                if info.num_pending or info.num_ack_pending:
                    return False
            return True
        await until(idle, 30, "pipeline idle")
        await asyncio.sleep(0.3)
        await until(idle, 30, "pipeline idle")


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[str, ApiarySettings]]:
    with served_control_plane(tmp_path_factory.mktemp("cp"), issuer=ISSUER, dp_id=DP_ID,
                              name="evaluation") as served:
        yield served


@pytest.fixture(scope="module")
async def world(control_plane: tuple[str, ApiarySettings], nats_server: NatsServer,
                store: EventStore, judge_server: FakeOpenAI,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    cp_url, cp_settings = control_plane
    async with httpx.AsyncClient(base_url=cp_url, timeout=30) as cp:
        owner = await owner_of_two_projects(cp, cp_url, cp_settings, "Eval")
        projects, key = owner.projects, owner.key
        keys = {"a": await key("a", EVERYTHING), "b": await key("b", EVERYTHING),
                "a_events": await key("a", ["events:read", "events:write"])}
    data_dir = tmp_path_factory.mktemp("dp")
    settings = cp_settings.model_copy(update={
        "data_dir": data_dir, "control_plane_url": cp_url, "jwt_issuer": ISSUER,
        "writer_flush_interval_s": 0.05, "writer_ack_wait_s": 5.0,
        "evaluator_definitions_ttl_s": 0.5, "evaluator_concurrency": 4,
        "evaluator_breaker_failures": 2, "evaluator_breaker_ttl_s": 0.3})
    nc = await connect(nats_server.url, name="online-test")
    await fresh_topology(nc, settings)
    client = DirectStoreClient(store)
    context = await DataPlaneContext.open(settings, nats_server.url,
                                          control_plane_authenticator(settings), store=client)
    objects = LocalObjectStore(data_dir / "objects")
    writer = WriterLoop(js=nc.jetstream(), store=client, objects=objects, settings=settings,
                        name="online-writer")
    scorer = Scorer(sandbox_size=1, limits=SandboxLimits(), default_model="judge-model",
                    judge_client=OpenAIJudgeClient(judge_server.url, timeout_s=10))
    evaluator = EvaluatorLoop(js=nc.jetstream(), scorer=scorer, objects=objects,
                              settings=settings, name="online-evaluator",
                              store=lambda: client)
    tasks = [asyncio.create_task(writer.run()), asyncio.create_task(evaluator.run())]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context)),
                                 base_url="http://dp", timeout=30) as dp:
        yield World(dp, context, store, writer, evaluator, projects, keys)
    writer.stop()
    evaluator.stop()
    await asyncio.gather(*tasks)
    await scorer.close()
    await context.close()
    await nc.close()


def _metric(name: str, criteria: str, *, kind: str = "PYTHON", enabled: bool = True,
            pct: float = 100.0, filters: list[dict[str, Any]] | None = None,
            **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "criteria": criteria, "return_type": "float",
            "enabled_in_prod": enabled, "sampling_percentage": pct,
            "filters": {"filterArray": filters or []}, **extra}


def _model_event(content: str, **fields: Any) -> dict[str, Any]:
    return {"event_type": "model", "event_name": "llm_call", "event_id": str(uuid.uuid4()),
            "session_id": fields.pop("session_id", str(uuid.uuid4())),
            "inputs": {"question": "where?"}, "outputs": {"content": content}, **fields}


async def test_a_deployed_python_metric_scores_new_events_within_seconds(world: World) -> None:
    name = f"words_{uuid.uuid4().hex[:6]}"
    created = await world.ok("POST", "/v1/metrics", json=_metric(
        name, WORD_COUNT, filters=[{"field": "event_type", "operator": "is",
                                    "value": "model"}]))
    online = await world.ok("GET", "/v1/evaluations/online")
    (spec,) = [m for m in online["metrics"] if m["name"] == name]
    assert (spec["id"], spec["kind"], spec["version"]) == (created["metric_id"], "python", 1)
    await asyncio.sleep(0.6)  # past the writers' definitions TTL
    started = time.monotonic()
    ids = await world.send([_model_event("Paris is in France"), _model_event("Lyon"),
                            {"event_type": "tool", "event_name": "lookup", "inputs": {},
                             "outputs": {"content": "a b c d e"}}])
    first = await world.scored(ids[0], name)
    second = await world.scored(ids[1], name)
    elapsed = time.monotonic() - started
    assert elapsed < 20, elapsed  # within seconds of ingestion
    assert first["metrics"][name] == 4
    assert first["metrics"][f"{name}_explanation"] == "words in the answer"
    assert first["metrics"][f"{name}_long"] is True
    assert second["metrics"][name] == 1
    assert first["outputs"] == {"content": "Paris is in France"}
    await world.settled()
    tool = await world.event(ids[2])
    assert name not in tool["metrics"]  # filtered out: a tool event
    exported = await world.ok("POST", "/v1/events/export", json={
        "filters": [{"field": f"metrics.{name}", "operator": "exists"}]})
    assert sorted(e["event_id"] for e in exported["events"]) == sorted(ids[:2])
    # Project B never sees project A's metric run on its events.
    (b_event,) = await world.send([_model_event("one two three four five")], who="b")
    await world.settled()
    assert name not in (await world.event(b_event, who="b"))["metrics"]


async def test_sampling_is_deterministic_and_disabling_stops_scoring(world: World) -> None:
    name = f"sampled_{uuid.uuid4().hex[:6]}"
    created = await world.ok("POST", "/v1/metrics",
                             json=_metric(name, "def evaluate(event):\n    return 1\n",
                                          pct=40.0))
    metric_id = created["metric_id"]
    await asyncio.sleep(0.6)
    events = [_model_event(f"answer {i}") for i in range(30)]
    ids = await world.send(events)
    await world.settled()
    scored = set()
    for event_id in ids:
        if name in (await world.event(event_id))["metrics"]:
            scored.add(event_id)
    spec = {"id": metric_id, "version": 1, "sampling_pct": 40.0}
    expected = {i for i in ids if sampled(i, spec)}  # type: ignore[arg-type]
    assert scored == expected
    assert 0 < len(scored) < len(ids)
    # Disabled in production: new events are no longer scored (once the TTL passed).
    await world.ok("PUT", f"/v1/metrics/{metric_id}", json={"enabled_in_prod": False})
    assert name not in {m["name"] for m in
                        (await world.ok("GET", "/v1/evaluations/online"))["metrics"]}
    await asyncio.sleep(0.6)
    later = await world.send([_model_event(f"later {i}") for i in range(10)])
    await world.settled()
    for event_id in later:
        assert name not in (await world.event(event_id))["metrics"]


async def test_an_llm_judge_metric_scores_new_events(world: World, judge: FakeOpenAI) -> None:
    name = f"judged_{uuid.uuid4().hex[:6]}"
    await world.ok("POST", "/v1/metrics", json=_metric(
        name, "Does {{outputs.content}} name the right country? event={{event_id}}",
        kind="LLM", model_name="gpt-4o-mini", model_provider="openai"))
    await asyncio.sleep(0.6)
    ids = await world.send([_model_event("It is France"), _model_event("It is Spain")])
    yes = await world.scored(ids[0], name)
    no = await world.scored(ids[1], name)
    assert (yes["metrics"][name], no["metrics"][name]) == (1.0, 0.0)
    assert no["metrics"][f"{name}_explanation"] == "France is not mentioned"
    models = {r["body"]["model"] for r in judge.requests}
    assert models == {"openai/gpt-4o-mini"}
    assert judge.per_event[ids[0]] == 1
    assert judge.per_event[ids[1]] == 1


async def test_an_experiment_run_is_scored_on_request_once(world: World) -> None:
    name = f"run_words_{uuid.uuid4().hex[:6]}"
    created = await world.ok("POST", "/v1/metrics", json=_metric(
        name, WORD_COUNT, enabled=False,
        filters=[{"field": "event_type", "operator": "is", "value": "model"}]))
    metric_id = created["metric_id"]
    run_id = str(uuid.uuid4())
    await world.ok("POST", "/v1/runs", json={"run_id": run_id, "name": "exp",
                                             "status": "running"})
    sessions = [str(uuid.uuid4()), str(uuid.uuid4())]
    ids = await world.send([
        _model_event("one two", session_id=sessions[0], metadata={"run_id": run_id}),
        _model_event("one two three", session_id=sessions[1], metadata={"run_id": run_id}),
        {"event_type": "chain", "event_name": "pipeline", "session_id": sessions[0],
         "inputs": {},
         "metadata": {"run_id": run_id}, "outputs": {"content": "x"}},
        _model_event("not in the run")])
    await world.ok("PUT", f"/v1/runs/{run_id}", json={"status": "completed",
                                                      "event_ids": sessions})
    await world.settled()
    assert name not in (await world.event(ids[0]))["metrics"]  # not online: disabled
    queued = await world.ok("POST", "/v1/evaluations", json={"metric_id": metric_id,
                                                             "run_id": run_id})
    assert (queued["events"], queued["queued"], queued["duplicates"]) == (2, 2, 0)
    assert (queued["metric_name"], queued["version"]) == (name, 1)
    assert (await world.scored(ids[0], name))["metrics"][name] == 2
    assert (await world.scored(ids[1], name))["metrics"][name] == 3
    again = await world.ok("POST", "/v1/evaluations", json={"metric_id": metric_id,
                                                            "version": "v1", "run_id": run_id})
    assert (again["queued"], again["duplicates"]) == (0, 2)
    await world.settled()
    assert name not in (await world.event(ids[2]))["metrics"]  # the metric's filter
    assert name not in (await world.event(ids[3]))["metrics"]  # not the run's
    patches = world.store.event_patches(world.projects["a"], ids[:2])
    # One score of this metric each (other metrics of the project scored them online too).
    assert [sum(1 for p in patches[i] if name in p.get("metrics", {})) for i in ids[:2]
            ] == [1, 1]
    result = await world.ok("GET", f"/v1/runs/{run_id}/result")
    (detail,) = [d for d in result["metrics"]["details"] if d["metric_name"] == name]
    assert sorted(detail["values"]) == [2, 3]
    # By ids and by filters too.
    by_ids = await world.ok("POST", "/v1/evaluations", json={
        "metric_id": metric_id, "event_ids": [ids[3]]})
    assert by_ids["queued"] == 1
    assert (await world.scored(ids[3], name))["metrics"][name] == 4
    by_filter = await world.ok("POST", "/v1/evaluations", json={
        "metric_id": metric_id, "filters": [{"field": "outputs.content", "operator": "contains",
                                             "value": "one two"}]})
    assert (by_filter["events"], by_filter["queued"], by_filter["duplicates"]) == (2, 0, 2)


async def test_evaluation_requests_are_checked(world: World) -> None:
    created = await world.ok("POST", "/v1/metrics", json=_metric(
        f"human_{uuid.uuid4().hex[:6]}", "Rate the answer 1-5", kind="HUMAN"))
    human = await world.call("POST", "/v1/evaluations", json={
        "metric_id": created["metric_id"], "filters": [{"field": "event_type",
                                                        "operator": "is", "value": "model"}]})
    assert human.status_code == 400
    python = await world.ok("POST", "/v1/metrics", json=_metric(
        f"p_{uuid.uuid4().hex[:6]}", "def evaluate(event):\n    return 1\n", enabled=False))
    body = {"metric_id": python["metric_id"], "event_ids": ["x"]}
    assert (await world.call("POST", "/v1/evaluations", "a_events", json=body)
            ).status_code == 403
    assert (await world.call("POST", "/v1/evaluations", "b", json=body)).status_code == 404
    assert (await world.call("POST", "/v1/evaluations", json={
        "metric_id": python["metric_id"]})).status_code == 400  # which events?
    assert (await world.call("POST", "/v1/evaluations", json={
        **body, "version": 7})).status_code == 404
    assert (await world.call("POST", "/v1/evaluations", json={
        "metric_id": python["metric_id"], "filters": [{"field": "bogus", "operator": "is",
                                                       "value": 1}]})).status_code == 400
    nothing = await world.ok("POST", "/v1/evaluations", json={**body,
                                                              "event_ids": ["not-stored"]})
    assert (nothing["events"], nothing["queued"]) == (0, 0)


async def test_the_writer_hook_costs_nothing_without_online_metrics(world: World) -> None:
    trigger = trigger_for(world.writer._js, world.context.settings)
    before = trigger.stats.tasks_published
    ids = await world.send([_model_event("plain")], who="b")
    await world.settled()
    assert (await world.event(ids[0], who="b"))["event_id"] == ids[0]
    assert trigger.stats.tasks_published == before
    assert trigger.stats.tasks_dropped == 0


async def test_a_judge_own_model_call_is_never_judged_again(world: World) -> None:
    """Judge calls are traced as model events (source apiary-judge): scoring those with
    an online judge would make every judgement beget another, forever."""
    name = f"loopguard_{uuid.uuid4().hex[:6]}"
    await world.ok("POST", "/v1/metrics", json=_metric(name, WORD_COUNT))
    await asyncio.sleep(0.6)  # past the writers' definitions TTL
    judged, own_call = await world.send([
        _model_event("a b c"), _model_event("verdict: yes", source="apiary-judge")])
    scored = await world.scored(judged, name)
    assert scored["metrics"][name] == 3
    await world.settled()
    assert name not in (await world.event(own_call))["metrics"]


async def test_a_rewrite_of_an_event_stored_before_a_metric_was_deployed_is_not_scored(
        world: World) -> None:
    """Issue 13 (6): a metric created after events were stored scored one of those old
    events, because a later write of the stored event (here: its very message, published
    again, as a redelivery or a dead-letter replay does) queued online evaluation with the
    metrics that existed then. Online metrics score what arrives after they are deployed."""
    copies: list[Any] = []  # the message as published (the stream forgets it once acked)

    async def keep(msg: Any) -> None:
        copies.append(msg)
    sub = await world.context.nc.subscribe(f"events.api.{world.projects['a']}", cb=keep)
    (old,) = await world.send([_model_event("stored before the metric")])
    await until(lambda: _true(bool(copies)), 10, "the event's message")
    await sub.unsubscribe()
    original = copies[0]
    await world.settled()
    name = f"late_{uuid.uuid4().hex[:6]}"
    await world.ok("POST", "/v1/metrics", json=_metric(name, WORD_COUNT))
    await asyncio.sleep(0.6)  # past the writers' definitions TTL
    trigger = trigger_for(world.writer._js, world.context.settings)
    skipped = trigger.stats.before_deployment
    headers = {k: v for k, v in (original.headers or {}).items() if k != "Nats-Msg-Id"}
    await world.context.js.publish(original.subject or "", original.data or b"",
                                   stream="events", headers=headers or None)
    (new,) = await world.send([_model_event("arrives after the metric")])
    await world.scored(new, name)  # the metric runs on what arrives after it
    await world.settled()
    assert trigger.stats.before_deployment > skipped  # the re-write reached the trigger
    assert name not in (await world.event(old))["metrics"]


async def _true(value: bool) -> bool:
    return value


async def test_a_paused_metric_is_shown_by_get_metrics_and_resumed_by_the_api(
        world: World) -> None:
    """Issue 13 (6): a metric failing every time is paused (here after 2 failures in a
    row); ``GET /v1/metrics`` shows its breaker and last error; ``POST
    /v1/metrics/{id}/resume`` (evaluators:write) resumes it."""
    name = f"broken_{uuid.uuid4().hex[:6]}"
    created = await world.ok("POST", "/v1/metrics", json=_metric(
        name, "def evaluate(event):\n    return 1 / 0\n"))
    metric_id = created["metric_id"]
    trigger = trigger_for(world.writer._js, world.context.settings)

    async def deployed() -> bool:
        metrics = await trigger.definitions.metrics(world.projects["a"])
        return metric_id in {m.spec["id"] for m in metrics}
    await until(deployed, 10, "the metric deployed to the writer")
    skipped = world.evaluator.stats.skipped_paused
    await world.send([_model_event(f"answer {i}") for i in range(5)])
    await world.settled()
    assert world.evaluator.stats.skipped_paused == skipped + 3
    (shown,) = (await world.ok("GET", "/v1/metrics", params={"id": metric_id}))["metrics"]
    assert shown["breaker"]["state"] == "paused"
    assert shown["breaker"]["consecutive_failures"] == 2
    assert "ZeroDivisionError" in shown["breaker"]["last_error"]
    assert shown["breaker"]["skipped"] == 3
    # Resuming needs evaluators:write, and a metric that exists.
    path = f"/v1/metrics/{metric_id}/resume"
    assert (await world.call("POST", path, "a_events")).status_code == 403
    assert (await world.call("POST", "/v1/metrics/no-such-metric/resume")).status_code == 404
    resumed = await world.ok("POST", path)
    assert resumed["resumed"] is True
    assert resumed["breaker"]["state"] == "closed"
    (shown,) = (await world.ok("GET", "/v1/metrics", params={"id": metric_id}))["metrics"]
    assert shown["breaker"]["state"] == "closed"
    assert "ZeroDivisionError" in shown["breaker"]["last_error"]  # kept for the record
    # Project B never shows project A's breaker.
    listed = (await world.ok("GET", "/v1/metrics", who="b"))["metrics"]
    assert all(m.get("breaker") is None for m in listed)
    # It runs again (within the breaker TTL): the next events are evaluated, not skipped.
    failed = world.evaluator.stats.failed
    await asyncio.sleep(world.context.settings.evaluator_breaker_ttl_s)
    await world.send([_model_event("again")])
    await world.settled()
    assert world.evaluator.stats.failed == failed + 1
    await world.ok("PUT", f"/v1/metrics/{metric_id}", json={"enabled_in_prod": False})
