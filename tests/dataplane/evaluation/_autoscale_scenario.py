"""The multi-node autoscaling scenario, run as its own process by ``test_autoscaling.py``.

It starts a Ray head node (free ports, token auth disabled for this private cluster) with
the autoscaler on Ray's fake multi-node provider: worker nodes of type ``evaluator``
(1 CPU, 1 unit of the ``evaluator`` resource each, at most ``--max-nodes``) are real
raylets on this machine, launched and removed by the autoscaler. Then:

1. a :class:`PoolScaler` for the evaluators (``min 1``, ``max --max-nodes``; every
   evaluator requests 1 CPU and ``evaluator: 1``, as the ``pools`` application does) starts
   the pool: its first actor waits for the autoscaler to add the first node;
2. the tasks of ``--tasks`` (a JSON file written by the test) are published to the
   ``evaluation`` stream at once: the backlog grows the pool, the pending actors make the
   autoscaler add nodes;
3. once every task is acknowledged, the pool shrinks back to one actor and the idle nodes
   are removed.

Every half second it records the backlog, the pool (size, ready, starting) and the alive
worker nodes; it prints one JSON document (timeline, the scaler's final status with the
stats of every drained evaluator, the live evaluators' stats) and stops the cluster by
its own handles: the head node's processes and every process it started. The final
status holds the last stats of every evaluator that ever ran (each drained before it was
removed, the last one when the scaler stopped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Before Ray is imported (the test sets these for this process; fail loudly otherwise).
assert os.environ.get("RAY_AUTH_MODE") == "disabled"
assert os.environ.get("RAY_FAKE_CLUSTER") == "1"


import psutil  # noqa: E402
import ray  # noqa: E402
import ray._private.node  # noqa: E402
import ray._private.parameter  # noqa: E402
import ray._private.services  # noqa: E402
from ray.autoscaler._private.fake_multi_node.node_provider import (  # noqa: E402
    FAKE_HEAD_NODE_ID,
)

from apiary._private.ports import spare_port  # noqa: E402
from apiary.actors.scaler import PoolScaler  # noqa: E402
from apiary.dataplane.evaluation.publish import TaskPublisher  # noqa: E402
from apiary.dataplane.evaluation.tasks import EvaluationTask  # noqa: E402
from apiary.dataplane.scaling import EVALUATORS  # noqa: E402
from apiary.dataplane.scaling.policy import ScalingPolicy  # noqa: E402
from apiary.queue import connect  # noqa: E402
from apiary.settings import ApiarySettings  # noqa: E402
from apiary.startup.cluster import EVALUATOR_RESOURCE  # noqa: E402

NODE_TYPE = "evaluator"




def _autoscaling_config(gcs_address: str, max_nodes: int) -> dict[str, Any]:
    return {
        "cluster_name": "apiary-evaluators",
        "max_workers": max_nodes,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True,
                     "gcs_address": gcs_address},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 2}, "node_config": {},
                                 "max_workers": 0},
            NODE_TYPE: {"resources": {"CPU": 1, EVALUATOR_RESOURCE: 1,
                                      "object_store_memory": 80 * 1024 * 1024},
                        "node_config": {}, "min_workers": 0, "max_workers": max_nodes},
        },
        "head_node_type": "ray.head.default",
        "auth": {}, "upscaling_speed": 1.0, "idle_timeout_minutes": 0.1, "docker": {},
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [], "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
    }


def start_head(max_nodes: int, workdir: str) -> ray._private.node.Node:
    port = spare_port()
    # Ray addresses this node by its IP (it rewrites 127.0.0.1 to it when connecting).
    gcs_address = f"{ray._private.services.get_node_ip_address()}:{port}"
    config_path = os.path.join(workdir, "autoscaling.json")
    with open(config_path, "w") as f:
        json.dump(_autoscaling_config(gcs_address, max_nodes), f)
    params = ray._private.parameter.RayParams(
        gcs_server_port=port, num_cpus=2, num_gpus=0,
        object_store_memory=100 * 1024 * 1024, min_worker_port=0, max_worker_port=0,
        include_dashboard=False, dashboard_port=spare_port(),
        dashboard_agent_listen_port=spare_port(), runtime_env_agent_port=spare_port(),
        metrics_export_port=spare_port(), autoscaling_config=config_path,
        # The fake provider knows the head by this id.
        env_vars={"RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID,
                  "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID},
    )
    return ray._private.node.Node(params, head=True, shutdown_at_exit=False,
                                  spawn_reaper=False)


def worker_nodes() -> int:
    return sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get(EVALUATOR_RESOURCE))


async def scenario(args: argparse.Namespace, tasks: list[EvaluationTask]) -> dict[str, Any]:
    settings = ApiarySettings(
        data_dir=args.data_dir, evaluator_min=1, evaluator_max=args.max_nodes,
        evaluator_concurrency=2, evaluator_backlog_per_actor=args.backlog_per_actor,
        scale_interval_s=0.5, scale_up_delay_s=1.0, scale_down_delay_s=4.0,
        evaluator_judge_url=args.judge_url, evaluator_judge_timeout_s=30,
        writer_ack_wait_s=30.0)
    policy = ScalingPolicy(1, args.max_nodes, args.backlog_per_actor, 1.0, 4.0)
    scaler = PoolScaler.options(name="apiary-scaler-evaluators",  # type: ignore[attr-defined]
                                namespace="apiary").remote(
        EVALUATORS, settings, args.nats_url, policy,
        {"num_cpus": 1, "resources": {EVALUATOR_RESOURCE: 1}})
    t0 = time.monotonic()
    timeline: list[dict[str, Any]] = []

    async def sample(phase: str) -> dict[str, Any]:
        status = await scaler.status.remote()
        point = {"t": round(time.monotonic() - t0, 2), "phase": phase,
                 "backlog": status["last"].get("backlog"), "size": status["size"],
                 "ready": status["ready"], "starting": status["starting"],
                 "nodes": worker_nodes()}
        timeline.append(point)
        print("POINT " + json.dumps(point), flush=True)  # progress, for a failing test's log
        return point

    await scaler.start.remote()
    deadline = time.monotonic() + args.timeout_s
    while (await sample("cold"))["ready"] < 1:  # the first node comes up for the minimum
        if time.monotonic() > deadline:
            raise TimeoutError("the first evaluator never became ready")
        await asyncio.sleep(0.5)
    nc = await connect(args.nats_url, name="autoscale-scenario")
    published_at = time.monotonic() - t0
    published = await TaskPublisher(nc.jetstream()).publish(tasks)
    drained_at = None
    while True:
        point = await sample("backlog" if drained_at is None else "drained")
        if drained_at is None and point["backlog"] == 0 and point["t"] > published_at + 2:
            drained_at = point["t"]
        if drained_at is not None and point["size"] == 1 and point["nodes"] == 1:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"scenario did not settle: {point}")
        await asyncio.sleep(0.5)
    final = await scaler.stop.remote()  # drains the last evaluator too
    await nc.close()
    return {"published": {"new": published.new, "duplicates": published.duplicates},
            "published_at": published_at, "drained_at": drained_at, "timeline": timeline,
            "evaluators": final["retired"], "start_failures": final["start_failures"]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--judge-url", required=True)
    parser.add_argument("--tasks", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--max-nodes", type=int, default=3)
    parser.add_argument("--backlog-per-actor", type=int, default=10)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    args = parser.parse_args()
    me = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="apiary-autoscale-") as workdir:
        head = start_head(args.max_nodes, workdir)
        try:
            ray.init(address=head.gcs_address, namespace="apiary", log_to_driver=False,
                     logging_level="ERROR", configure_logging=False)
            tasks: list[EvaluationTask] = json.loads(Path(args.tasks).read_text())
            result = asyncio.run(scenario(args, tasks))
            print("SCENARIO-RESULT " + json.dumps(result), flush=True)
            return 0
        finally:
            # Everything started here, collected before the head goes (the autoscaler's
            # worker nodes are descendants of its monitor process).
            mine = me.children(recursive=True)
            ray.shutdown()
            head.kill_all_processes(check_alive=False, allow_graceful=True, wait=True)
            for proc in mine:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
            psutil.wait_procs(mine, timeout=10)


if __name__ == "__main__":
    sys.exit(main())
