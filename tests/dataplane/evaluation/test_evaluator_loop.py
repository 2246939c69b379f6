"""The evaluator loop on real servers: the session's nats-server, chDB (``store``) with a real
writer loop persisting the scores, the real sandbox, and a local OpenAI-compatible judge.

Crashes are simulated inside the loop (a ``BaseException`` that ends the task's handling
without ack or nak, as a dying process would); JetStream then redelivers after
``ack_wait`` (2 s here) to another loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _fresh_topology import fresh_topology, until
from _openai_server import FakeOpenAI
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from apiary.dataplane.evaluation.breakers import BreakerStore
from apiary.dataplane.evaluation.judge import OpenAIJudgeClient
from apiary.dataplane.evaluation.loop import EvaluatorLoop
from apiary.dataplane.evaluation.metrics import MetricSpec
from apiary.dataplane.evaluation.publish import TaskPublisher
from apiary.dataplane.evaluation.sandbox import SandboxLimits
from apiary.dataplane.evaluation.scoring import Scorer
from apiary.dataplane.evaluation.tasks import EvaluationTask, encode_task, new_task, task_subject
from apiary.dataplane.writer import WriterLoop
from apiary.event import Event, EventPatch, Tenant, new_event
from apiary.objects import LocalObjectStore
from apiary.queue import NatsServer, connect
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

LENGTH = """
def evaluate(outputs):
    answer = outputs.get("answer", "")
    return {"score": len(answer), "explanation": "characters in the answer"}
"""


class _Crash(BaseException):
    """Ends a task's handling the way a dying process would: no ack, no nak."""


@dataclass
class Plane:
    settings: ApiarySettings
    nc: Client
    js: JetStreamContext
    store: EventStore
    scorer: Scorer
    writer: WriterLoop
    data_dir: Path
    tenant: Tenant

    def loop(self, cls: type[EvaluatorLoop] = EvaluatorLoop, name: str = "ev") -> EvaluatorLoop:
        client = DirectStoreClient(self.store)
        return cls(js=self.js, scorer=self.scorer, objects=LocalObjectStore(
            self.data_dir / "objects"), settings=self.settings, name=name,
            store=lambda: client)

    def insert(self, events: list[Event]) -> None:
        self.store.insert_events(self.tenant, 1, events)

    async def publish(self, tasks: list[EvaluationTask]) -> None:
        published = await TaskPublisher(self.js).publish(tasks)
        assert published.new == len(tasks)

    async def drained(self) -> bool:
        info = await self.js.consumer_info("evaluation", "evaluators")
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)

    def patches(self, event_ids: list[str]) -> dict[str, list[EventPatch]]:
        return self.store.event_patches(self.tenant["project_id"], event_ids)

    async def scored_event(self, event_id: str, key: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def has_score() -> bool:
            nonlocal found
            found = self.store.get_event(self.tenant["project_id"], event_id)
            return key in found["metrics"]
        await until(has_score, 30, f"score {key} on {event_id}")
        return found


@pytest.fixture(scope="module")
async def plane(nats_server: NatsServer, store: EventStore, judge_server: FakeOpenAI,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Plane]:
    data_dir = tmp_path_factory.mktemp("evaluator-loop")
    settings = ApiarySettings(data_dir=data_dir, writer_flush_interval_s=0.05,
                              writer_ack_wait_s=2.0, writer_max_deliver=4,
                              evaluator_concurrency=4)
    nc = await connect(nats_server.url, name="evaluator-loop-test")
    js = nc.jetstream()
    await fresh_topology(nc, settings)
    writer = WriterLoop(js=js, store=DirectStoreClient(store),
                        objects=LocalObjectStore(data_dir / "objects"), settings=settings,
                        name="evaluation-test-writer")
    writer_task = asyncio.create_task(writer.run())
    scorer = Scorer(sandbox_size=1, limits=SandboxLimits(), default_model="judge-model",
                    judge_client=OpenAIJudgeClient(judge_server.url, timeout_s=10))
    tenant: Tenant = {"org_id": "o", "workspace_id": "w",
                      "project_id": f"proj-eval-{uuid.uuid4().hex[:8]}"}
    yield Plane(settings, nc, js, store, scorer, writer, data_dir, tenant)
    writer.stop()
    await writer_task
    await scorer.close()
    await nc.close()


@contextlib.asynccontextmanager
async def running(loop: EvaluatorLoop) -> AsyncIterator[EvaluatorLoop]:
    task = asyncio.create_task(loop.run())
    try:
        yield loop
    finally:
        loop.stop()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def audit(js: JetStreamContext, project_id: str) -> AsyncIterator[list[Msg]]:
    """Every score message the events stream stores for the project while inside."""
    name = f"audit-{uuid.uuid4().hex[:8]}"
    await js.add_consumer("events", ConsumerConfig(
        durable_name=name, deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT,
        filter_subject=f"events.updates.{project_id}"))
    seen: list[Msg] = []
    sub = await js.pull_subscribe_bind(name, "events")
    try:
        yield seen
    finally:
        while True:
            try:
                msgs = await sub.fetch(batch=100, timeout=1.0)
            except Exception:
                break
            for msg in msgs:
                seen.append(msg)
                await msg.ack()
        await js.delete_consumer("events", name)


def _metric(kind: str = "python", **overrides: Any) -> MetricSpec:
    spec: MetricSpec = {
        "id": f"m-{uuid.uuid4().hex[:8]}", "name": "answer_length", "kind": kind,
        "version": 1, "code": LENGTH if kind == "python" else None,
        "criteria": "Judge {{outputs.answer}} event={{event_id}}" if kind == "llm" else None,
        "return_type": "float", "sampling_pct": 100.0, "filters": [], "model_params": {},
    }
    spec.update(overrides)  # type: ignore[typeddict-item]
    return spec


def _events(n: int, answer: str = "Paris, France") -> list[Event]:
    return [new_event(event_id=f"ev-{uuid.uuid4().hex[:10]}", session_id="s", event_type="model",
                      start_time=1.7e12, end_time=1.7e12 + 5, duration=5.0,
                      outputs={"answer": answer + "!" * i}) for i in range(n)]


async def test_python_scores_become_metrics_of_the_events(plane: Plane) -> None:
    events = _events(3)
    plane.insert(events)
    metric = _metric()
    tasks = [new_task(plane.tenant, e, metric, source="online") for e in events]
    async with audit(plane.js, plane.tenant["project_id"]) as seen, \
            running(plane.loop()) as loop:
        await plane.publish(tasks)
        for i, event in enumerate(events):
            stored = await plane.scored_event(event["event_id"], "answer_length")
            assert stored["metrics"]["answer_length"] == len("Paris, France") + i
            assert stored["metrics"]["answer_length_explanation"] == \
                "characters in the answer"
            assert stored["outputs"] == event["outputs"]  # the rest of the event stays
        await until(plane.drained, 10, "tasks acknowledged")
    assert (loop.stats.evaluations, loop.stats.scored, loop.stats.failed) == (3, 3, 0)
    assert len(seen) == 3
    patches = plane.patches([e["event_id"] for e in events])
    assert all(len(patches[e["event_id"]]) == 1 for e in events)
    assert patches[events[0]["event_id"]][0]["version"] == tasks[0]["created_ns"]


class _CrashAfterPublishing(EvaluatorLoop):
    """Publishes the score, then dies before recording it or acknowledging the task."""

    published: list[Any] = []

    async def _publish_score(self, task: EvaluationTask, patch: Any) -> None:
        await super()._publish_score(task, patch)
        type(self).published.append(patch)
        raise _Crash


class _Recording(EvaluatorLoop):
    published: list[Any] = []

    async def _publish_score(self, task: EvaluationTask, patch: Any) -> None:
        await super()._publish_score(task, patch)
        type(self).published.append(patch)


async def test_a_crash_between_scoring_and_ack_yields_one_score(
        plane: Plane, judge: FakeOpenAI) -> None:
    """The judge answers differently on every call: only the task's identity can keep the
    second score out, and it must."""
    counter = itertools.count(1)
    judge.reply = lambda _m: f'{{"score": {next(counter)}, "explanation": "call"}}'
    (event,) = _events(1)
    plane.insert([event])
    task = new_task(plane.tenant, event, _metric("llm"), source="request")
    async with audit(plane.js, plane.tenant["project_id"]) as seen:
        crashing = plane.loop(_CrashAfterPublishing, "crashing")
        async with running(crashing):
            await plane.publish([task])
            await until(lambda: _true(bool(_CrashAfterPublishing.published)), 20,
                        "first score published")
        assert crashing.stats.evaluations == 1
        assert not await plane.drained()  # unacknowledged: JetStream will redeliver
        async with running(plane.loop(_Recording, "survivor")) as survivor:
            await until(plane.drained, 30, "redelivered task acknowledged")
        stored = await plane.scored_event(event["event_id"], "answer_length")
    assert survivor.stats.redelivered == 1
    assert survivor.stats.evaluations == 1  # it did score again ...
    assert (survivor.stats.duplicate_scores, survivor.stats.scored) == (1, 0)  # ... in vain
    assert judge.per_event[event["event_id"]] == 2
    (first,) = _CrashAfterPublishing.published
    (second,) = _Recording.published
    assert first["version"] == second["version"] == task["created_ns"]
    assert first["metrics"]["answer_length"] == 1
    assert second["metrics"]["answer_length"] == 2
    assert len(seen) == 1  # one score message on the stream
    assert len(plane.patches([event["event_id"]])[event["event_id"]]) == 1
    assert stored["metrics"]["answer_length"] == 1  # the score that was published first


async def _true(value: bool) -> bool:
    return value


class _CrashBeforeAck(EvaluatorLoop):
    crashed = 0

    async def _finish(self, msg: Msg, task: EvaluationTask) -> None:
        type(self).crashed += 1
        raise _Crash


async def test_a_crash_after_recording_skips_the_redelivery(plane: Plane) -> None:
    (event,) = _events(1)
    plane.insert([event])
    task = new_task(plane.tenant, event, _metric(), source="online")
    async with audit(plane.js, plane.tenant["project_id"]) as seen:
        async with running(plane.loop(_CrashBeforeAck, "crashing")) as crashing:
            await plane.publish([task])
            await until(lambda: _true(_CrashBeforeAck.crashed == 1), 20, "crash")
        async with running(plane.loop(name="survivor")) as survivor:
            await until(plane.drained, 30, "redelivered task acknowledged")
        await plane.scored_event(event["event_id"], "answer_length")
    assert (crashing.stats.evaluations, crashing.stats.scored) == (1, 1)
    assert (survivor.stats.redelivered, survivor.stats.already_scored) == (1, 1)
    assert survivor.stats.evaluations == 0
    assert len(seen) == 1


async def test_a_task_queued_again_after_the_duplicate_window_is_not_scored_again(
        plane: Plane) -> None:
    """Past the window JetStream stores the same task again (simulated with another
    Nats-Msg-Id); the ledger keeps it from being scored twice."""
    (event,) = _events(1)
    plane.insert([event])
    task = new_task(plane.tenant, event, _metric(), source="request")
    async with audit(plane.js, plane.tenant["project_id"]) as seen, \
            running(plane.loop()) as loop:
        await plane.publish([task])
        await plane.scored_event(event["event_id"], "answer_length")
        await until(plane.drained, 10)
        again = await TaskPublisher(plane.js).publish([task])
        assert (again.new, again.duplicates) == (0, 1)  # inside the window: dropped
        await plane.js.publish(task_subject("request", plane.tenant["project_id"]),
                               encode_task(task), stream="evaluation",
                               headers={"Nats-Msg-Id": "after-the-window"})
        await until(lambda: _true(loop.stats.already_scored == 1), 20, "ledger skip")
        await until(plane.drained, 10)
    assert (loop.stats.evaluations, loop.stats.scored) == (1, 1)
    assert len(seen) == 1


async def test_failing_metrics_are_acknowledged_without_a_score(plane: Plane) -> None:
    events = _events(3)
    plane.insert(events)
    raising = _metric(code="def evaluate(outputs):\n    return 1 / 0\n")
    nothing = _metric(code="def evaluate(outputs):\n    return None\n")
    human = _metric("human", criteria="rate it")
    tasks = [new_task(plane.tenant, events[0], raising, source="online"),
             new_task(plane.tenant, events[1], nothing, source="online"),
             new_task(plane.tenant, events[2], human, source="request")]
    async with audit(plane.js, plane.tenant["project_id"]) as seen, \
            running(plane.loop()) as loop:
        await plane.publish(tasks)
        await until(plane.drained, 30, "tasks acknowledged")
    assert (loop.stats.failed, loop.stats.no_score, loop.stats.scored) == (2, 1, 0)
    assert seen == []
    assert plane.patches([e["event_id"] for e in events]) == {}


async def test_an_unavailable_judge_is_retried_and_a_slow_one_kept_alive(
        plane: Plane, judge: FakeOpenAI) -> None:
    events = _events(2)
    plane.insert(events)
    metric = _metric("llm")
    judge.statuses = [503]
    async with running(plane.loop()) as loop:
        await plane.publish([new_task(plane.tenant, events[0], metric, source="online")])
        await plane.scored_event(events[0]["event_id"], "answer_length")
        await until(plane.drained, 10)
        assert (loop.stats.handed_back, loop.stats.redelivered, loop.stats.scored) == (1, 1, 1)
        # Slower than ack_wait (2 s): in_progress keeps it from being redelivered.
        judge.delay_s = 3.5
        await plane.publish([new_task(plane.tenant, events[1], metric, source="online")])
        stored = await plane.scored_event(events[1]["event_id"], "answer_length")
        await until(plane.drained, 10)
    assert stored["metrics"]["answer_length"] == 1
    assert stored["metrics"]["answer_length_explanation"] == "France is mentioned"
    assert loop.stats.redelivered == 1  # still only the 503's
    assert judge.per_event[events[1]["event_id"]] == 1


async def test_events_too_large_to_carry_are_read_from_the_store(plane: Plane) -> None:
    (big,) = _events(1, answer="x" * 300_000)
    (missing,) = _events(1)
    plane.insert([big])
    metric = _metric()
    by_reference = new_task(plane.tenant, big, metric, source="online")
    assert "event" not in by_reference
    gone = new_task(plane.tenant, missing, metric, source="online")
    del gone["event"]  # as if it had been too large, and is not stored
    async with running(plane.loop()) as loop:
        await plane.publish([by_reference, gone])
        stored = await plane.scored_event(big["event_id"], "answer_length")
        await until(plane.drained, 10)
    assert stored["metrics"]["answer_length"] == 300_000
    assert (loop.stats.scored, loop.stats.failed) == (1, 1)


async def test_undecodable_tasks_are_dead_lettered(plane: Plane) -> None:
    forged = new_task(plane.tenant, _events(1)[0], _metric(), source="online")
    forged["task_id"] = "0" * 32  # not the id of its event and metric
    async with running(plane.loop()) as loop:
        await plane.js.publish("evaluation.online.x", b"not json", stream="evaluation")
        await plane.js.publish(task_subject("online", plane.tenant["project_id"]),
                               encode_task(forged), stream="evaluation")
        await until(plane.drained, 10)
    assert loop.stats.dead_lettered == 2
    letters = list((plane.data_dir / "objects" / "dlq" / "evaluation").rglob("*.json"))
    assert len(letters) >= 2


async def test_a_metric_that_fails_every_time_is_paused_and_skipped_until_resumed(
        plane: Plane) -> None:
    """Issue 13 (6): nothing stopped a metric that fails every time. After
    ``evaluator_breaker_failures`` failures in a row it is paused for its project: its
    tasks are acknowledged as skipped (counted), not run, until it is resumed."""
    settings = plane.settings.model_copy(update={"evaluator_breaker_failures": 3,
                                                 "evaluator_breaker_ttl_s": 0.2})
    client = DirectStoreClient(plane.store)
    loop = EvaluatorLoop(js=plane.js, scorer=plane.scorer, settings=settings, name="breaker",
                         objects=LocalObjectStore(plane.data_dir / "objects"),
                         store=lambda: client)
    events = _events(8)
    plane.insert(events)
    raising = _metric(code="def evaluate(outputs):\n    return 1 / 0\n")
    project, metric_id = plane.tenant["project_id"], raising["id"]
    other: Tenant = {**plane.tenant, "project_id": f"{project}-other"}
    async with running(loop):
        await plane.publish([new_task(plane.tenant, e, raising, source="online")
                             for e in events])
        await until(plane.drained, 60, "tasks acknowledged")
        assert (loop.stats.failed, loop.stats.skipped_paused) == (3, 5)
        breakers = BreakerStore(await plane.js.key_value("evaluator-breakers"))
        state = await breakers.get(project, metric_id)
        assert state.paused
        assert state.consecutive_failures == 3
        assert "ZeroDivisionError" in (state.last_error or "")
        assert state.skipped == 5
        # Per project: the same metric id elsewhere is not paused.
        assert not (await breakers.get(other["project_id"], metric_id)).paused
        # Resumed: it runs again (and fails again: counted from zero).
        await breakers.resume(project, metric_id)
        await until(lambda: _not_paused(loop, project, metric_id), 5, "resume seen")
        more = _events(1)
        plane.insert(more)
        await plane.publish([new_task(plane.tenant, more[0], raising, source="online")])
        await until(plane.drained, 30, "task acknowledged")
    assert (loop.stats.failed, loop.stats.skipped_paused) == (4, 5)
    state = await breakers.get(project, metric_id)
    assert (state.state, state.consecutive_failures) == ("closed", 0)


async def _not_paused(loop: EvaluatorLoop, project: str, metric_id: str) -> bool:
    assert loop._breakers is not None
    return not await loop._breakers.paused(project, metric_id)
