"""Fault 10: a busy-loop metric (and an escape attempt) beside a normal one.

Measured before issue 13: with a busy-loop metric and an escape attempt deployed and 20
events sent, a metric deployed next took about a minute to score its first event: every
busy-loop evaluation held the evaluator's only sandbox worker for its whole CPU limit, the
evaluator took the tasks in queue order, and nothing stopped a metric that fails every time.

Here, on the real components (a nats-server, chDB, a real writer loop storing the events and
scores, a real evaluator loop with the real sandbox), the normal metric's first score must
be stored within one sandbox timeout plus 5 s of its event being sent, and both failing
metrics must end paused by their circuit breakers (their remaining tasks skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _ray_pipeline import assert_accounted, settled_accounting
from _report import FaultReport
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from apiary.dataplane.accounting import ingest_stats
from apiary.dataplane.evaluation.breakers import BreakerStore
from apiary.dataplane.evaluation.definitions import DefinitionStore
from apiary.dataplane.evaluation.loop import EvaluatorLoop
from apiary.dataplane.evaluation.metrics import MetricSpec
from apiary.dataplane.evaluation.online import trigger_for
from apiary.dataplane.evaluation.scoring import Scorer
from apiary.dataplane.writer import WriterLoop
from apiary.event import API_KIND, EventBatch, Tenant, new_event
from apiary.objects import LocalObjectStore
from apiary.queue import (
    WIRE_SCHEMA,
    NatsServer,
    connect,
    encode_batch,
    ensure_topology,
    events_subject,
)
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

SANDBOX_TIMEOUT_S = 4.0
BACKLOG = 20
BUSY = "def evaluate(event):\n    while True:\n        pass\n"
ESCAPE = ("def evaluate(event):\n    import subprocess\n"
          "    return subprocess.run(['id']).returncode\n")
NORMAL = "def evaluate(event):\n    return len(event['outputs']['content'])\n"


def _spec(name: str, code: str) -> MetricSpec:
    return {"id": f"m-{name}-{uuid.uuid4().hex[:6]}", "name": name, "kind": "python",
            "version": 1, "code": code, "criteria": None, "return_type": "float",
            "sampling_pct": 100.0, "filters": [], "model_params": {}}


async def until(predicate: Callable[[], Awaitable[bool]], wait_s: float, what: str) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {wait_s} s")


@dataclass
class Plane:
    settings: ApiarySettings
    js: JetStreamContext
    store: EventStore
    writer: WriterLoop
    evaluator: EvaluatorLoop
    tenant: Tenant

    async def deploy(self, specs: list[MetricSpec]) -> None:
        """Store the project's online metrics and wait until the writer uses them."""
        await (await DefinitionStore.open(self.js, self.settings)).put(
            self.tenant["project_id"], specs)
        trigger = trigger_for(self.js, self.settings)

        async def seen() -> bool:
            metrics = await trigger.definitions.metrics(self.tenant["project_id"])
            return {m.spec["id"] for m in metrics} == {s["id"] for s in specs}
        await until(seen, 10, "the writer using the deployed metrics")

    async def send(self, count: int) -> list[str]:
        """Events as ingestion publishes them (one batch); their ids."""
        events = [new_event(event_id=f"ev-{uuid.uuid4().hex[:12]}", session_id="s",
                            event_type="model", start_time=1.7e12, end_time=1.7e12 + 5,
                            duration=5.0, outputs={"content": "x" * (i + 1)})
                  for i in range(count)]
        batch: EventBatch = {"schema": WIRE_SCHEMA, "kind": API_KIND, "tenant": self.tenant,
                             "version": time.time_ns(), "events": events}
        await self.js.publish(events_subject(API_KIND, self.tenant["project_id"]),
                              encode_batch(batch), stream="events")
        return [e["event_id"] for e in events]

    def score(self, event_id: str, name: str) -> Any:
        try:
            event = self.store.get_event(self.tenant["project_id"], event_id)
        except Exception:  # not stored yet
            return None
        return event["metrics"].get(name)


@pytest.fixture
async def plane(nats_server: NatsServer, store: EventStore, tmp_path: Path
                ) -> AsyncIterator[Plane]:
    settings = ApiarySettings(
        data_dir=tmp_path, writer_flush_interval_s=0.05, writer_ack_wait_s=5.0,
        evaluator_definitions_ttl_s=0.2, evaluator_concurrency=16,
        evaluator_metric_concurrency=1, evaluator_breaker_failures=3,
        sandbox_pool_size=1, sandbox_pool_max_size=4, sandbox_cpu_s=2,
        sandbox_timeout_s=SANDBOX_TIMEOUT_S)
    nc = await connect(nats_server.url, name="fault-busy-loop")
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, settings)
    client = DirectStoreClient(store)
    objects = LocalObjectStore(tmp_path / "objects")
    writer = WriterLoop(js=js, store=client, objects=objects, settings=settings,
                        name="fault-writer")
    scorer = Scorer.from_settings(settings)
    evaluator = EvaluatorLoop(js=js, scorer=scorer, objects=objects, settings=settings,
                              name="fault-evaluator", store=lambda: client)
    tenant: Tenant = {"org_id": "o", "workspace_id": "w",
                      "project_id": f"proj-busy-{uuid.uuid4().hex[:8]}"}
    tasks = [asyncio.create_task(writer.run()), asyncio.create_task(evaluator.run())]
    try:
        yield Plane(settings, js, store, writer, evaluator, tenant)
    finally:
        writer.stop()
        evaluator.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        await scorer.close()
        await nc.close()


async def test_busy_loop_metric_does_not_starve_a_normal_one(
        plane: Plane, fault_report: FaultReport) -> None:
    busy, escape, normal = _spec("busy", BUSY), _spec("escape", ESCAPE), _spec("words", NORMAL)
    await plane.deploy([busy, escape])
    old = await plane.send(BACKLOG)

    async def busy_backlog() -> bool:  # the busy metric holds the sandbox, tasks wait
        return plane.evaluator.stats.evaluations >= 2 and plane.evaluator.stats.received \
            >= 2 * BACKLOG
    await until(busy_backlog, 60, "the failing metrics' backlog taken")

    await plane.deploy([busy, escape, normal])
    (new,) = await plane.send(1)
    sent = time.monotonic()

    async def scored() -> bool:
        return plane.score(new, "words") is not None
    await until(scored, SANDBOX_TIMEOUT_S + 5, "the normal metric's first score")
    elapsed = time.monotonic() - sent
    assert plane.score(new, "words") == 1
    assert elapsed <= SANDBOX_TIMEOUT_S + 5, elapsed

    breakers = await BreakerStore.open(plane.js, plane.settings)
    project = plane.tenant["project_id"]

    async def both_paused() -> bool:
        states = await breakers.states(project, [busy["id"], escape["id"]])
        return all(s.paused for s in states.values())
    await until(both_paused, 60, "the failing metrics paused")

    async def drained() -> bool:
        info = await plane.js.consumer_info("evaluation", "evaluators")
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)
    await until(drained, 60, "every task acknowledged")
    states = await breakers.states(project, [busy["id"], escape["id"], normal["id"]])
    assert states[busy["id"]].paused
    assert states[escape["id"]].paused
    assert not states[normal["id"]].paused
    # One task of a metric at a time: each failing metric ran 3 times (the breaker's
    # threshold); the rest of its tasks (the backlog and the last event's) were skipped,
    # none retried.
    stats = plane.evaluator.stats
    assert stats.failed == 2 * 3
    assert stats.skipped_paused == 2 * (BACKLOG + 1 - 3)
    assert stats.handed_back == 0
    # The normal metric, deployed after the first 20 events arrived, never scores them.
    assert all(plane.score(event_id, "words") is None for event_id in old)
    # Recovery here: from the new event's publish to the normal metric's first score.
    # Duplicates: rows beyond one per event and version (a score is a new version).
    copies = plane.store.driver.query_rows(
        f"SELECT count() - uniqExact(event_id, version) AS n FROM `{plane.store.database}`"
        ".events WHERE project_id = {p:String}", {"p": project})[0]["n"]
    # The ingest accounting is exact: every event and every score patch accepted is stored
    # (nothing dead-lettered, nothing left in flight once the scores are written).
    async def accounting() -> dict[str, Any]:
        stats = (await ingest_stats(plane.js, DirectStoreClient(plane.store), project))[project]
        return {**stats.total.as_dict(), "api": stats.kind(API_KIND).as_dict()}
    counts = await settled_accounting(accounting, 60)
    sent_rows = BACKLOG + 1
    assert_accounted(counts, accepted=counts["accepted"]["rows"],
                     stored=counts["accepted"]["rows"])
    api = (await accounting())["api"]
    assert api["accepted"] == api["stored"] == {"messages": 2, "rows": sent_rows}, api
    assert plane.store.count_events(project) == sent_rows
    fault_report.record("10. busy-loop metric beside a normal one", BACKLOG + 1,
                        plane.store.count_events(project), plane.writer.stats.dead_lettered,
                        int(copies), elapsed)
