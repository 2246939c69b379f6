"""bench/evaluate: the evaluation service's throughput and how fast its pool scales up.

Usage: bench/evaluate [--tasks 2000] [--backlog 3000] [--max-evaluators 3]
                      [--backlog-per-actor 100] [--up-delay 0] [--concurrency 4]

Everything runs for real on this machine: an embedded nats-server, a private local Ray
(token auth off: nobody else connects to it), evaluator actors under a
:class:`~apiary.actors.scaler.PoolScaler`, each with its sandbox pool. Tasks are published
to the ``evaluation`` stream as the writers' hook or ``POST /v1/evaluations`` would; a
score counts when its patch is on the ``events`` stream (JetStream acknowledged it: that
is when it is durable). No writer runs, so ClickHouse is not part of the figures
(``bench/ingest`` measures the writers).

The metric is trivial (``len(event["outputs"]["content"])``), so the figures are the
service's own cost per evaluation: task decode, ledger look-up, sandbox round trip,
score publish, ledger record, ack.

Figures:

1. evaluations/s with a fixed pool: 1 evaluator with 1 sandbox worker (the embedded
   default), 1 with 2, 2 with 1 each, after a warm-up (sandboxes started);
2. scale-up from a cold backlog: a pool idle at its minimum (1 evaluator, whose sandbox
   starts with the first Python metric, as every evaluator's does) receives
   ``--backlog`` tasks at once; time to the first score, until the scaler decided the
   maximum size, until every evaluator is ready (actor started), until every evaluator
   has scored (its sandbox started), and until the backlog is drained, with the
   throughput while scaling and once scaled.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# A private cluster of this process: say so before Ray is imported (Ray 2.60 reads it once).
os.environ["RAY_AUTH_MODE"] = "disabled"

import ray  # noqa: E402
from nats.js import JetStreamContext  # noqa: E402
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy  # noqa: E402

from apiary.actors.scaler import PoolScaler  # noqa: E402
from apiary.dataplane.evaluation.metrics import MetricSpec  # noqa: E402
from apiary.dataplane.evaluation.publish import TaskPublisher  # noqa: E402
from apiary.dataplane.evaluation.tasks import EvaluationTask, new_task  # noqa: E402
from apiary.dataplane.scaling import EVALUATORS  # noqa: E402
from apiary.dataplane.scaling.policy import ScalingPolicy  # noqa: E402
from apiary.event import Tenant, new_event  # noqa: E402
from apiary.queue import NatsServer, connect, ensure_topology  # noqa: E402
from apiary.settings import ApiarySettings  # noqa: E402

TRIVIAL = 'def evaluate(event):\n    return len(event["outputs"]["content"])\n'


def _tasks(n: int, tenant: Tenant) -> list[EvaluationTask]:
    metric: MetricSpec = {
        "id": f"bench-{uuid.uuid4().hex[:8]}", "name": "length", "kind": "python",
        "version": 1, "code": TRIVIAL, "criteria": None, "return_type": "float",
        "sampling_pct": 100.0, "filters": [], "model_params": {}}
    return [new_task(tenant, new_event(event_id=str(uuid.uuid4()), event_type="model",
                                       outputs={"content": f"answer number {i}"}),
                     metric, source="request") for i in range(n)]


@dataclass
class Counter:
    """Counts score patches on the events stream (an audit consumer of one project)."""

    js: JetStreamContext
    project_id: str
    seen: int = 0

    async def open(self) -> None:
        self.name = f"bench-{uuid.uuid4().hex[:6]}"
        await self.js.add_consumer("events", ConsumerConfig(
            durable_name=self.name, deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE, filter_subject=f"events.updates.{self.project_id}"))
        self.sub = await self.js.pull_subscribe_bind(self.name, "events")

    async def poll(self) -> int:
        try:
            msgs = await self.sub.fetch(batch=1000, timeout=0.05)
        except Exception:  # nothing new
            return self.seen
        self.seen += len(msgs)
        return self.seen

    async def until(self, n: int, timeout_s: float) -> float:
        """Seconds until ``n`` scores have been seen."""
        started = time.monotonic()
        while await self.poll() < n:
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"only {self.seen} of {n} scores in {timeout_s} s")
        return time.monotonic() - started


def _settings(data_dir: Path, args: argparse.Namespace, sandbox: int,
              **extra: Any) -> ApiarySettings:
    if args.concurrency is not None:
        extra["evaluator_concurrency"] = args.concurrency
    return ApiarySettings(data_dir=data_dir, sandbox_pool_size=sandbox,
                          writer_ack_wait_s=120.0, **extra)


async def throughput(js: JetStreamContext, url: str, data_dir: Path, args: argparse.Namespace,
                     evaluators: int, sandbox: int) -> float:
    settings = _settings(data_dir, args, sandbox, scale_interval_s=1.0)
    policy = ScalingPolicy(evaluators, evaluators, 1, 0.0, 0.0)
    scaler = PoolScaler.remote(EVALUATORS, settings, url, policy,  # type: ignore[attr-defined]
                               {"num_cpus": 0.5})
    tenant: Tenant = {"org_id": "o", "workspace_id": "w",
                      "project_id": f"bench-{uuid.uuid4().hex[:8]}"}
    counter = Counter(js, tenant["project_id"])
    await counter.open()
    try:
        await scaler.start.remote()
        warm = 20 * evaluators * sandbox
        await TaskPublisher(js).publish(_tasks(warm, tenant))
        await counter.until(warm, 300)
        tasks = _tasks(args.tasks, tenant)
        started = time.monotonic()
        await TaskPublisher(js).publish(tasks)
        await counter.until(warm + len(tasks), 600)
        return len(tasks) / (time.monotonic() - started)
    finally:
        await scaler.stop.remote()
        ray.kill(scaler)


async def scale_up(js: JetStreamContext, url: str, data_dir: Path,
                   args: argparse.Namespace) -> dict[str, Any]:
    settings = _settings(data_dir, args, 1, scale_interval_s=0.5)
    policy = ScalingPolicy(1, args.max_evaluators, args.backlog_per_actor, args.up_delay, 30.0)
    scaler = PoolScaler.remote(EVALUATORS, settings, url, policy,  # type: ignore[attr-defined]
                               {"num_cpus": 0.5})
    tenant: Tenant = {"org_id": "o", "workspace_id": "w",
                      "project_id": f"bench-{uuid.uuid4().hex[:8]}"}
    counter = Counter(js, tenant["project_id"])
    await counter.open()
    marks: dict[str, float] = {}
    samples: list[tuple[float, int]] = []
    try:
        await scaler.start.remote()
        for _ in range(600):  # one evaluator, started and idle; its sandbox starts on demand
            if (await scaler.status.remote())["ready"] == 1:
                break
            await asyncio.sleep(0.2)
        tasks = _tasks(args.backlog, tenant)
        t0 = time.monotonic()
        # Published in the background: the clock runs from the first task on.
        publishing = asyncio.create_task(TaskPublisher(js).publish(tasks))
        while counter.seen < len(tasks):
            now = time.monotonic() - t0
            if publishing.done() and "all published" not in marks:
                publishing.result()
                marks["all published"] = now
            seen = await counter.poll()
            samples.append((now, seen))
            if seen and "first score" not in marks:
                marks["first score"] = now
            status = await scaler.status.remote()
            if status["size"] == args.max_evaluators and "max size decided" not in marks:
                marks["max size decided"] = now
            if status["ready"] == args.max_evaluators and "all ready" not in marks:
                marks["all ready"] = now
            if "all scoring" not in marks and status["ready"] == args.max_evaluators:
                stats = await scaler.actor_stats.remote()
                if len(stats) == args.max_evaluators and all(s.get("scored", 0) > 0
                                                             for s in stats):
                    marks["all scoring"] = now
            if now > 900:
                raise TimeoutError("the backlog did not drain in 900 s")
            await asyncio.sleep(0.2)
        marks["drained"] = time.monotonic() - t0
    finally:
        await scaler.stop.remote()
        ray.kill(scaler)

    def rate(start: float, end: float) -> float:
        inside = [(t, n) for t, n in samples if start <= t <= end]
        if len(inside) < 2 or inside[-1][0] == inside[0][0]:
            return float("nan")
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    full = marks.get("all scoring", marks["drained"])
    return {"marks": marks, "rate_before": rate(marks.get("first score", 0.0), full),
            "rate_after": rate(full, marks["drained"])}


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="apiary-bench-eval-") as tmp:
        data_dir = Path(tmp)
        server = NatsServer(data_dir / "nats")
        url = server.start()
        ray.init(num_cpus=max(4, 2 * args.max_evaluators), include_dashboard=False,
                 namespace="apiary", log_to_driver=False, logging_level=logging.ERROR,
                 configure_logging=False)
        nc = await connect(url, name="bench-evaluate")
        try:
            js = nc.jetstream()
            await ensure_topology(js, ApiarySettings(data_dir=data_dir,
                                                     writer_ack_wait_s=120.0))
            concurrency = _settings(data_dir, args, 1).evaluator_concurrency
            print(f"bench/evaluate: {os.cpu_count()} CPUs, trivial Python metric, "
                  f"{concurrency} tasks in flight per evaluator")
            print("\n1. evaluations/s, fixed pool (task -> sandbox -> durable score patch)")
            for evaluators, sandbox in ((1, 1), (1, 2), (2, 1)) if args.tasks else ():
                rate = await throughput(js, url, data_dir, args, evaluators, sandbox)
                print(f"   {evaluators} evaluator(s) x {sandbox} sandbox worker(s): "
                      f"{rate:8.0f} evaluations/s  ({args.tasks} tasks)")
            print(f"\n2. scale-up from a cold backlog of {args.backlog} tasks "
                  f"(pool 1 -> {args.max_evaluators}, {args.backlog_per_actor} tasks per "
                  f"evaluator, up delay {args.up_delay} s, scaler every 0.5 s)")
            result = await scale_up(js, url, data_dir, args)
            for name, at in result["marks"].items():
                print(f"   {name:>18}: {at:7.2f} s")
            print(f"   throughput, first score -> all scoring: {result['rate_before']:6.0f} "
                  "evaluations/s")
            print(f"   throughput, all scoring -> drained:     {result['rate_after']:6.0f} "
                  "evaluations/s")
        finally:
            await nc.close()
            ray.shutdown()
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench/evaluate", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--backlog", type=int, default=3000)
    parser.add_argument("--max-evaluators", type=int, default=3)
    parser.add_argument("--backlog-per-actor", type=int, default=100)
    parser.add_argument("--up-delay", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=None,
                        help="tasks in flight per evaluator (default: the setting's)")
    asyncio.run(main(parser.parse_args()))
