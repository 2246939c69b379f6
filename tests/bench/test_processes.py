"""bench/ingest's process groups: live processes are charged to the right group."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from apiary.queue import NatsServer
from bench._processes import (
    CLICKHOUSE,
    GENERATOR,
    NATS,
    OTHER,
    RAY,
    REPLICA,
    WRITERS,
    Actor,
    Proc,
    actor_table,
    classify,
    cpu_seconds,
    label,
)


@pytest.fixture
def child() -> Iterator[psutil.Process]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield psutil.Process(process.pid)
    finally:
        process.kill()
        process.wait()


def test_a_fixed_table_of_real_processes_is_grouped_by_actor_name_and_ancestry(
    child: psutil.Process,
) -> None:
    me, kid = Proc.of(psutil.Process()), Proc.of(child)
    assert kid.ppid == me.pid
    nats = Proc(pid=10_001, ppid=me.pid, name="nats-server",
                cmdline=("/x/.venv/bin/nats-server", "-c", "nats.conf"))
    raylet = Proc(pid=10_002, ppid=me.pid, name="raylet",
                  cmdline=("/x/ray/core/src/ray/raylet/raylet", "--node_id=1"))
    replica = Proc(pid=10_003, ppid=raylet.pid, name="ray::ServeRepl",
                   cmdline=("ray::ServeReplica:data-plane:DataPlane",))
    idle = Proc(pid=10_004, ppid=raylet.pid, name="ray::IDLE", cmdline=("ray::IDLE",))
    forked = Proc(pid=10_005, ppid=replica.pid, name="sh", cmdline=("sh", "-c", "true"))
    actors = {replica.pid: Actor("ServeReplica:data-plane:DataPlane", "SERVE_REPLICA::x"),
              kid.pid: Actor("EventWriter", "writer-0")}

    groups = classify([me, kid, nats, raylet, replica, idle, forked], actors)
    assert groups == {me.pid: OTHER, kid.pid: WRITERS, nats.pid: NATS, raylet.pid: RAY,
                      replica.pid: REPLICA, idle.pid: RAY, forked.pid: REPLICA}
    assert [label(p, actors) for p in (kid, nats, idle, replica)] == [
        "EventWriter", "nats-server", "ray::IDLE", "ServeReplica:data-plane:DataPlane"]
    # The generator is named by pid; what it forks is the generator's too.
    assert classify([me, kid], {}, generator_pids=[me.pid]) == {me.pid: GENERATOR,
                                                                kid.pid: GENERATOR}


def test_cpu_seconds_grows_with_work_and_counts_reaped_children() -> None:
    me = psutil.Process()
    before_own, before_all = cpu_seconds(me, children=False), cpu_seconds(me)
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(me, children=False) - before_own >= 0.04
    # The reaped child's CPU is in the total, not in the process's own.
    assert (cpu_seconds(me) - before_all) - (cpu_seconds(me, children=False) - before_own) > 0.05


@pytest.mark.ray
def test_a_live_ray_node_and_nats_server_are_grouped_from_the_actor_table(
    nats_server: NatsServer,
) -> None:
    import ray

    class EventWriter:
        """Stands in for apiary.actors.writer.EventWriter: the classifier reads class names
        (defined here so that Ray pickles it by value; workers cannot import tests)."""

        def pid(self) -> int:
            import os

            return os.getpid()

        def spawn(self) -> int:
            # A process the actor forks: charged to the actor's group.
            return subprocess.Popen(["sleep", "120"]).pid

    class ClickHouseActor(EventWriter):
        pass

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, namespace="bench-processes-test",
                 log_to_driver=False)
    try:
        writer: Any = ray.remote(EventWriter).remote()
        owner: Any = ray.remote(ClickHouseActor).remote()
        pids: list[int] = ray.get([writer.pid.remote(), owner.pid.remote()], timeout=120)
        writer_pid, owner_pid = pids
        forked_pid: int = ray.get(writer.spawn.remote(), timeout=60)
        address = str(ray.get_runtime_context().gcs_address)
        actors = actor_table(address)
        assert actors[writer_pid].class_name.endswith(".EventWriter")

        me = psutil.Process()
        nodes = [psutil.Process(p.pid) for p in psutil.process_iter(["name"])
                 if p.info["name"] in ("raylet", "gcs_server")
                 and p.pid in {c.pid for c in me.children(recursive=True)}]
        assert {p.name() for p in nodes} == {"raylet", "gcs_server"}
        nats_pid = nats_server.pid
        assert nats_pid is not None
        live = [me, *nodes, *(psutil.Process(pid) for pid in
                              (writer_pid, owner_pid, forked_pid, nats_pid))]
        procs = [Proc.of(p) for p in live]
        groups = classify(procs, actors, generator_pids=[me.pid])

        assert groups[writer_pid] == WRITERS
        assert groups[owner_pid] == CLICKHOUSE
        assert groups[forked_pid] == WRITERS
        assert groups[nats_pid] == NATS
        assert all(groups[p.pid] == RAY for p in nodes)
        assert groups[me.pid] == GENERATOR
        psutil.Process(forked_pid).kill()
    finally:
        if started:
            ray.shutdown()
