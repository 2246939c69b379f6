"""A backlog grows the evaluator pool and the cluster; the drained queue shrinks both; every
task is scored exactly once.

Ray's local multi-node simulation (the autoscaler with the fake multi-node provider, in
``_autoscale_scenario.py``, run as its own process so that its Ray cluster, with token
auth disabled, is private to it) scales ``evaluator`` nodes for the evaluator pool, which a
:class:`PoolScaler` sizes on the ``evaluation`` consumer's backlog. The tasks are LLM-judge
tasks against the local OpenAI-compatible server, slowed to 0.25 s a call, so that the
backlog outlives node start-up on a slow machine without burning CPU.

Exact accounting, three ways: the judge server counts its calls per event (each exactly
once: no task evaluated twice, none lost); the events stream's score messages (an audit
consumer) and the score patches the writer stored in ClickHouse (one per event).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from _fresh_topology import fresh_topology, until
from _openai_server import FakeOpenAI
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from apiary.dataplane.evaluation.metrics import MetricSpec
from apiary.dataplane.evaluation.tasks import new_task
from apiary.dataplane.writer import WriterLoop
from apiary.event import Tenant, new_event
from apiary.objects import LocalObjectStore
from apiary.queue import NatsServer
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

pytestmark = pytest.mark.ray

SCENARIO = Path(__file__).with_name("_autoscale_scenario.py")
ROOT = Path(__file__).resolve().parents[3]
TASKS = 240
MAX_NODES = 3


async def _run_scenario(args: list[str], timeout_s: float) -> dict[str, Any]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_FAKE_CLUSTER": "1",
           "AUTOSCALER_UPDATE_INTERVAL_S": "1", "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SCENARIO), *args, env=env, cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # our own process group only
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("SCENARIO-RESULT ")]
    assert proc.returncode == 0, text[-6000:]
    assert lines, text[-6000:]
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("SCENARIO-RESULT "))
    return result


async def test_a_backlog_scales_evaluators_and_nodes_up_and_down_exactly_once(
        nats_server: NatsServer, store: EventStore, judge: FakeOpenAI, nc: Client,
        tmp_path: Path) -> None:
    settings = ApiarySettings(data_dir=tmp_path, writer_flush_interval_s=0.1,
                              writer_ack_wait_s=30.0)
    await fresh_topology(nc, settings)
    js = nc.jetstream()
    tenant: Tenant = {"org_id": "o", "workspace_id": "w",
                      "project_id": f"proj-scale-{uuid.uuid4().hex[:8]}"}
    events = [new_event(event_id=f"ev-{i:04d}-{uuid.uuid4().hex[:6]}", session_id="s",
                        event_type="model", start_time=1.7e12, end_time=1.7e12 + 1,
                        outputs={"content": f"answer {i} about France"})
              for i in range(TASKS)]
    store.insert_events(tenant, 1, events)
    metric: MetricSpec = {
        "id": "judge-1", "name": "about_france", "kind": "llm", "version": 1, "code": None,
        "criteria": "Is {{outputs.content}} about France? event={{event_id}}",
        "return_type": "float", "sampling_pct": 100.0, "filters": [], "model_params": {}}
    tasks = [new_task(tenant, e, metric, source="request") for e in events]
    (tmp_path / "tasks.json").write_bytes(orjson.dumps(tasks))
    judge.delay_s = 0.25
    audit = f"audit-{uuid.uuid4().hex[:6]}"
    await js.add_consumer("events", ConsumerConfig(
        durable_name=audit, deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT,
        filter_subject=f"events.updates.{tenant['project_id']}"))
    writer = WriterLoop(js=js, store=DirectStoreClient(store),
                        objects=LocalObjectStore(tmp_path / "objects"), settings=settings,
                        name="autoscale-writer")
    writer_task = asyncio.create_task(writer.run())
    started = time.monotonic()
    try:
        result = await _run_scenario([
            "--nats-url", nats_server.url, "--judge-url", judge.url,
            "--tasks", str(tmp_path / "tasks.json"), "--data-dir", str(tmp_path),
            "--max-nodes", str(MAX_NODES), "--backlog-per-actor", "10",
            "--timeout-s", "420"], timeout_s=480)
        ids = [e["event_id"] for e in events]

        async def stored() -> bool:
            patches = store.event_patches(tenant["project_id"], ids)
            return len(patches) == TASKS
        await until(stored, 60, "every score stored")
    finally:
        writer.stop()
        await writer_task
    timeline = result["timeline"]
    print(f"\nautoscaling scenario ({time.monotonic() - started:.0f} s): "
          f"published at {result['published_at']:.1f} s, drained at {result['drained_at']} s")
    for point in timeline[::4]:
        print("  ", point)

    # The pool and the nodes followed the queue: up to the maximum, then back to one.
    backlog = [p for p in timeline if p["phase"] == "backlog"]
    assert max(p["size"] for p in backlog) == MAX_NODES
    assert max(p["ready"] for p in backlog) >= 2
    assert max(p["nodes"] for p in timeline) >= 2
    assert [p["nodes"] for p in timeline if p["phase"] == "cold"][-1] == 1
    assert timeline[-1]["size"] == 1
    assert timeline[-1]["nodes"] == 1
    peak = max(range(len(timeline)), key=lambda i: timeline[i]["nodes"])
    assert timeline[peak]["t"] < timeline[-1]["t"]
    assert result["published"] == {"new": TASKS, "duplicates": 0}

    # Exactly once: the judge saw every event once ...
    assert sorted(judge.per_event[i] for i in ids) == [1] * TASKS
    assert sum(judge.per_event.values()) == TASKS
    # ... the evaluators ran TASKS metrics and published TASKS scores between them ...
    every = result["evaluators"]
    assert sum(s["evaluations"] for s in every) == TASKS
    assert sum(s["scored"] for s in every) == TASKS
    assert sum(s["duplicate_scores"] + s["failed"] + s["dead_lettered"] for s in every) == 0
    assert len([s for s in every if s["evaluations"] > 0]) >= 2  # the work was shared
    # ... the stream holds one score message per event ...
    sub = await js.pull_subscribe_bind(audit, "events")
    seen: list[str] = []
    with contextlib.suppress(Exception):
        while True:
            for msg in await sub.fetch(batch=500, timeout=1.0):
                seen.append(orjson.loads(msg.data)["patches"][0]["event_id"])
                await msg.ack()
    await js.delete_consumer("events", audit)
    assert sorted(seen) == sorted(ids)
    # ... and ClickHouse one score patch per event, merged into the event.
    patches = store.event_patches(tenant["project_id"], ids)
    assert [len(patches[i]) for i in ids] == [1] * TASKS
    assert store.get_event(tenant["project_id"], ids[0])["metrics"]["about_france"] == 1.0
