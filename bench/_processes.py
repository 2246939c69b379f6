"""Which process of a running Apiary is which: the groups bench/ingest charges CPU to.

Ray actors (Serve replicas, writers, the chDB owner, Serve's controller and proxies) are
identified from Ray's actor table (GCS: class name and pid, dead actors included, so a
restarted writer's old pid still counts as a writer), read by :func:`actor_table` in a
short-lived subprocess (the bench process does not join the cluster). Processes that are
not actors are identified by their executable name or command line (nats-server, raylet,
gcs_server, haproxy, Ray's agents and monitors). A process that is neither inherits the
group of its nearest classified ancestor (a process forked by a classified one); what is
left is ``other platform``. Nothing is guessed from CPU use or order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psutil

REPLICA = "data-plane replica"
WRITERS = "writers"
CLICKHOUSE = "clickhouse owner"
NATS = "nats-server"
RAY = "ray upkeep"
OTHER = "other platform"
GENERATOR = "load generator"
#: Print order; every group but the generator counts toward the platform total.
GROUPS = (REPLICA, WRITERS, CLICKHOUSE, NATS, RAY, OTHER, GENERATOR)

# Actor class names (Ray's ``class_name``; a Serve replica's is ``ServeReplica:<app>:<dep>``).
_ACTOR_GROUPS = {
    "EventWriter": WRITERS,
    "ClickHouseActor": CLICKHOUSE,
    "ServeController": RAY,
    "ProxyActor": RAY,
    "HAProxyManager": RAY,
}
_DATA_PLANE_REPLICA = "ServeReplica:data-plane:"
# Executable names of processes that are not actors.
_EXECUTABLES = {"nats-server": NATS, "raylet": RAY, "gcs_server": RAY, "haproxy": RAY}
# Command-line fragments of Ray's own Python helpers and of pooled, not yet used workers.
_RAY_HELPERS = ("dashboard/agent.py", "runtime_env/agent/main.py", "log_monitor.py",
                "autoscaler/_private/monitor.py", "dashboard/dashboard.py", "ray::IDLE")


@dataclass(frozen=True)
class Proc:
    """The identifying fields of one process, as psutil reports them."""

    pid: int
    ppid: int
    name: str
    cmdline: tuple[str, ...]

    @classmethod
    def of(cls, process: psutil.Process) -> Proc:
        with process.oneshot():
            return cls(process.pid, process.ppid(), process.name(), tuple(process.cmdline()))


@dataclass(frozen=True)
class Actor:
    class_name: str
    name: str


def actor_table(gcs_address: str, timeout: float = 60.0) -> dict[int, Actor]:
    """pid -> actor of every actor Ray knows (alive or dead), read from the GCS."""
    script = (
        "import json, sys, ray\n"
        "from ray._private import state\n"
        "ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
        "print(json.dumps([[a['Pid'], a['ActorClassName'], a['Name']]\n"
        "                  for a in state.actors().values() if a['Pid']]))\n"
    )
    # `apiary up` runs Ray with token authentication (apiary/cli sets RAY_AUTH_MODE).
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
    done = subprocess.run([sys.executable, "-c", script, gcs_address], capture_output=True,
                          text=True, timeout=timeout, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"reading Ray's actor table from {gcs_address} failed "
                           f"(exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    return {int(pid): Actor(str(cls), str(name)) for pid, cls, name in rows}


def _own_group(proc: Proc, actors: Mapping[int, Actor]) -> str | None:
    actor = actors.get(proc.pid)
    if actor is not None:
        if actor.class_name.startswith(_DATA_PLANE_REPLICA):
            return REPLICA
        # A class defined in a function is named by its qualified name (``f.<locals>.C``).
        return _ACTOR_GROUPS.get(actor.class_name.rsplit(".", 1)[-1], OTHER)
    executable = proc.cmdline[0].rsplit("/", 1)[-1] if proc.cmdline else proc.name
    for candidate in (proc.name, executable):
        if candidate in _EXECUTABLES:
            return _EXECUTABLES[candidate]
    text = " ".join(proc.cmdline)
    if any(fragment in text for fragment in _RAY_HELPERS):
        return RAY
    return None


def classify(procs: Iterable[Proc], actors: Mapping[int, Actor],
             generator_pids: Iterable[int] = ()) -> dict[int, str]:
    """pid -> group for every process in ``procs``; see the module docstring."""
    by_pid = {p.pid: p for p in procs}
    generator = set(generator_pids)
    groups: dict[int, str] = {}

    def group_of(pid: int, seen: frozenset[int] = frozenset()) -> str | None:
        if pid in groups:
            return groups[pid]
        proc = by_pid.get(pid)
        if proc is None or pid in seen:
            return None
        if pid in generator:
            return GENERATOR
        own = _own_group(proc, actors)
        return own if own is not None else group_of(proc.ppid, seen | {pid})

    for pid in by_pid:
        groups[pid] = group_of(pid) or OTHER
    return groups


def label(proc: Proc, actors: Mapping[int, Actor]) -> str:
    """A short name for the output: the actor's class (the app and deployment of a Serve
    replica), else the executable's name or Ray's process title."""
    actor = actors.get(proc.pid)
    if actor is not None:
        return actor.class_name.rsplit(".", 1)[-1]
    if proc.cmdline and proc.cmdline[0].startswith("ray::"):
        return proc.cmdline[0]
    for arg in proc.cmdline[:3]:
        if arg.endswith(".py") or arg.startswith("apiary."):
            return arg.rsplit("/", 1)[-1]
    return proc.name


def cpu_seconds(process: psutil.Process, children: bool = True) -> float:
    """User + system CPU seconds of a process, plus its reaped children's if ``children``."""
    t = process.cpu_times()
    total = t.user + t.system
    if children:
        total += t.children_user + t.children_system
    return float(total)
