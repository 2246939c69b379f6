"""bench/ingest: sustained OTLP ingestion into a running Apiary, against a bare ceiling.

Usage: bench/ingest [--duration 60] [--clients 8] [--ingress haproxy|proxy] [--no-baseline]

1. Baseline: the same load against a bare uvicorn endpoint that only decodes the OTLP
   protobuf body (bench/_baseline_server.py): the most any Python OTLP receiver could take.
2. Apiary: ``apiary up`` in a subprocess on a fresh data directory; N clients send realistic
   LLM traces (bench/_workload.py: 100 spans per request) for a fixed duration; a poller
   counts stored rows every 100 ms (``GET /v1/events/count``); after the load, the run
   waits until every acknowledged span is queryable, then counts distinct events and
   stored rows exactly.

Figures: accepted spans/s, stored spans/s (all spans / time until the last is queryable),
p50/p99 acknowledgement latency, ingest-to-queryable lag p50/p95, completeness, duplicate
rows, refusals (429/503), and the platform's CPU and memory (PSS summed over the
``apiary up`` process tree: nats-server, Ray, Serve, HAProxy, writers, chDB).

CPU per stored span, per process group (bench/_processes.py): over the measured window
(from the start of the load until every acknowledged span is queryable), the user+system
CPU seconds (reaped children included) of the data-plane replica(s), the writers, the chDB
owner, nats-server, Ray's upkeep (raylet, GCS, agents, idle workers, Serve controller,
proxies, HAProxy), other platform processes, and the load generator (this process: the
clients, the stored-count poller and the sampler), divided by the distinct events stored;
``platform`` sums all but the generator. Actors are identified from Ray's actor table,
other processes by executable name; the output lists the pids counted in each group.

Lag is estimated from the arrival order: the span acknowledged k-th is taken as queryable
when the stored count first reaches k (JetStream delivers in order; a writer keeps it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apiary._private.ports import spare_port  # noqa: E402
from bench._processes import (  # noqa: E402
    GENERATOR,
    GROUPS,
    Proc,
    actor_table,
    classify,
    cpu_seconds,
    label,
)
from bench._workload import RequestFactory  # noqa: E402


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@dataclass
class LoadResult:
    duration: float = 0.0
    started: float = 0.0
    acked_spans: int = 0
    acks: list[tuple[float, int]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0


async def run_load(url: str, api_key: str | None, clients: int, duration: float,
                   factory: RequestFactory) -> LoadResult:
    result = LoadResult()
    headers = {"content-type": "application/x-protobuf"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        result.started = time.monotonic()
        deadline = result.started + duration

        async def client() -> None:
            while time.monotonic() < deadline:
                body, _sessions = factory.make()
                t0 = time.monotonic()
                try:
                    async with http.post(url, data=body, headers=headers) as response:
                        await response.read()
                        status = response.status
                        retry_after = float(response.headers.get("Retry-After", "1"))
                except (TimeoutError, aiohttp.ClientError):
                    result.errors += 1
                    await asyncio.sleep(0.1)
                    continue
                t1 = time.monotonic()
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if status == 200:
                    result.latencies.append(t1 - t0)
                    result.acked_spans += factory.spans
                    result.acks.append((t1, factory.spans))
                elif status in (429, 503):
                    await asyncio.sleep(min(retry_after, 1.0))

        await asyncio.gather(*(client() for _ in range(clients)))
    result.duration = time.monotonic() - result.started
    return result


class TreeSampler:
    """CPU seconds and memory of a process and all its descendants, sampled every second."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self._cpu: dict[int, float] = {}
        self._roles: dict[int, str] = {}
        self._procs: dict[int, Proc] = {}
        self.peak_pss = 0
        self.peak_rss = 0
        self.pss_at_peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _processes(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def sample(self) -> None:
        pss = rss = 0
        by_role: dict[str, int] = {}
        for p in self._processes():
            try:
                self._cpu[p.pid] = cpu_seconds(p)
                # The latest identity: a pooled worker's title changes when it becomes an actor.
                self._procs[p.pid] = Proc.of(p)
                # A pooled Ray worker (ray::IDLE) becomes an actor or a replica later:
                # only a specific role is final.
                if self._roles.get(p.pid, "ray other") == "ray other":
                    self._roles[p.pid] = _role(p)
                info = p.memory_full_info()
                pss += info.pss
                rss += info.rss
                role = self._roles.get(p.pid, "other")
                by_role[role] = by_role.get(role, 0) + info.pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        if pss > self.peak_pss:
            self.pss_at_peak = by_role
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_rss = max(self.peak_rss, rss)

    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())

    def cpu_by_pid(self) -> dict[int, float]:
        """CPU seconds (children reaped included) of every process seen, at its last sample."""
        return dict(self._cpu)

    def procs(self) -> list[Proc]:
        return list(self._procs.values())

    def cpu_by_role(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for pid, seconds in self._cpu.items():
            role = self._roles.get(pid, "other")
            totals[role] = totals.get(role, 0.0) + seconds
        return totals

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _role(process: psutil.Process) -> str:
    """What a process of the platform is, from its name and command line."""
    try:
        text = " ".join(process.cmdline()) or process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "other"
    # A worker process is named after its actor only once started (setproctitle); before,
    # its command line is default_worker.py's, whose arguments mention the raylet.
    for needle, role in (("default_worker.py", "ray other"),
                         ("nats-server", "nats-server"), ("haproxy", "haproxy"),
                         ("DataPlane", "data-plane replica"),
                         ("ControlPlane", "control-plane replica"),
                         ("EventWriter", "writer"), ("ClickHouse", "chdb owner"),
                         ("gcs_server", "ray gcs"), ("raylet/raylet", "raylet"),
                         ("ServeController", "serve controller"), ("apiary.cli", "apiary up"),
                         ("HAProxyManager", "haproxy"), ("ProxyActor", "serve proxy"),
                         ("EvaluatorActor", "evaluators"), ("PoolScaler", "evaluators"),
                         ("Dashboard", "ray dashboard"), ("dashboard", "ray dashboard"),
                         ("ray::", "ray other")):
        if needle in text:
            return role
    return "other"


def cpu_breakdown(before: dict[int, float], after: dict[int, float], groups: dict[int, str],
                  labels: dict[int, str], generator_seconds: float, stored_spans: int,
                  window: float) -> dict[str, Any]:
    """CPU of each process group over the measured window: seconds, µs per stored span,
    cores, and the pids counted; ``platform`` sums every group but the load generator."""
    seconds: dict[str, float] = {group: 0.0 for group in GROUPS}
    pids: dict[str, list[int]] = {group: [] for group in GROUPS}
    for pid, total in after.items():
        group = groups.get(pid, "other platform")
        seconds[group] += max(0.0, total - before.get(pid, 0.0))
        pids[group].append(pid)
    seconds[GENERATOR] = generator_seconds
    pids[GENERATOR] = [os.getpid()]
    labels = {**labels, os.getpid(): "bench/ingest"}

    def row(s: float, counted: list[int]) -> dict[str, Any]:
        return {"cpu_s": round(s, 3),
                "us_per_stored_span": round(s * 1e6 / stored_spans, 1) if stored_spans else None,
                "cores": round(s / window, 3),
                "pids": {pid: labels.get(pid, "?") for pid in sorted(counted)}}

    out = {group: row(seconds[group], pids[group]) for group in GROUPS}
    out["platform"] = row(sum(v for k, v in seconds.items() if k != GENERATOR),
                          [pid for k, v in pids.items() if k != GENERATOR for pid in v])
    return out


def cpu_table(breakdown: dict[str, Any], stored_spans: int, window: float) -> str:
    """The per-group CPU figures as a table, with the pids counted in each group."""
    lines = [f"\n  CPU per stored span over the measured window ({window:.1f} s, "
             f"{stored_spans:,} stored spans; user+system, reaped children included):",
             f"    {'group':<20} {'µs/span':>8} {'cores':>6} {'CPU s':>8}  pids"]
    for group in (*GROUPS[:-1], "platform", GROUPS[-1]):
        r = breakdown[group]
        per_span = "-" if r["us_per_stored_span"] is None else f"{r['us_per_stored_span']:.1f}"
        counted = ("(the groups above)" if group == "platform"
                   else ", ".join(f"{pid} {name}" for pid, name in r["pids"].items())
                   or "none")
        lines.append(f"    {group:<20} {per_span:>8} {r['cores']:>6.2f} {r['cpu_s']:>8.2f}  "
                     f"{counted}")
    return "\n".join(lines)


def baseline(args: argparse.Namespace, factory: RequestFactory) -> dict[str, Any]:
    port = spare_port()
    server = subprocess.Popen([sys.executable, "-m", "bench._baseline_server", str(port)],
                              cwd=ROOT)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        sampler = TreeSampler(server.pid)
        sampler.start()
        cpu0 = sampler.cpu_seconds()
        load = asyncio.run(run_load(f"http://127.0.0.1:{port}/v1/traces", None, args.clients,
                                    args.duration, factory))
        sampler.stop()
        return {
            "accepted_spans_per_s": load.acked_spans / load.duration,
            "ack_p50_ms": _pct(load.latencies, 50) * 1000,
            "ack_p99_ms": _pct(load.latencies, 99) * 1000,
            "server_cpu_cores": (sampler.cpu_seconds() - cpu0) / load.duration,
        }
    finally:
        server.terminate()
        server.wait()


class StoredCounter:
    """Polls how many rows the project has stored, through the public count endpoint."""

    def __init__(self, url: str, api_key: str) -> None:
        self._url = f"{url}/v1/events/count"
        self._headers = {"authorization": f"Bearer {api_key}"}
        self.samples: list[tuple[float, int]] = []

    def exact(self) -> dict[str, int]:
        import httpx

        response = httpx.get(self._url, params={"exact": "true"}, headers=self._headers,
                             timeout=120)
        response.raise_for_status()
        counts: dict[str, int] = response.json()
        return counts

    async def poll(self, stop: asyncio.Event, interval: float = 0.1) -> None:
        async with aiohttp.ClientSession(headers=self._headers) as http:
            while not stop.is_set():
                try:
                    async with http.get(self._url) as response:
                        rows = int((await response.json())["rows"])
                    self.samples.append((time.monotonic(), rows))
                except (TimeoutError, aiohttp.ClientError, KeyError, ValueError):
                    pass
                await asyncio.sleep(interval)


def start_apiary(args: argparse.Namespace, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, APIARY_DATA_DIR=str(data_dir), APIARY_PORT=str(port),
               APIARY_SERVE_INGRESS=args.ingress, APIARY_LOG_FORMAT="text",
               LITELLM_LOCAL_MODEL_COST_MAP="True")
    log = open(data_dir / "apiary-up.log", "wb")  # noqa: SIM115 - closed with the process
    apiary = subprocess.Popen([sys.executable, "-m", "apiary.cli", "up"], env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if apiary.poll() is not None:
            raise SystemExit(f"apiary up exited; see {data_dir / 'apiary-up.log'}")
        if (data_dir / "state.json").exists():
            return apiary
        time.sleep(0.5)
    raise SystemExit("apiary up did not become ready in 180 s")


async def platform_run(args: argparse.Namespace, factory: RequestFactory,
                       counter: StoredCounter, url: str, api_key: str) -> dict[str, Any]:
    stop = asyncio.Event()
    poller = asyncio.create_task(counter.poll(stop))
    load = await run_load(url, api_key, args.clients, args.duration, factory)
    drain_deadline = time.monotonic() + args.drain_timeout
    while time.monotonic() < drain_deadline:
        if counter.samples and counter.samples[-1][1] >= load.acked_spans:
            break
        await asyncio.sleep(0.1)
    stop.set()
    await poller
    complete_at = next((t for t, n in counter.samples if n >= load.acked_spans), None)
    lags: list[float] = []
    cumulative = 0
    sample_i = 0
    for ack_time, spans in sorted(load.acks):
        cumulative += spans
        while sample_i < len(counter.samples) and counter.samples[sample_i][1] < cumulative:
            sample_i += 1
        if sample_i < len(counter.samples):
            lags.append(max(0.0, counter.samples[sample_i][0] - ack_time))
    stored_window = (complete_at or time.monotonic()) - load.started
    return {
        "load": load,
        "accepted_spans_per_s": load.acked_spans / load.duration,
        "stored_spans_per_s": load.acked_spans / stored_window if complete_at else float("nan"),
        "ack_p50_ms": _pct(load.latencies, 50) * 1000,
        "ack_p99_ms": _pct(load.latencies, 99) * 1000,
        "lag_p50_s": _pct(lags, 50),
        "lag_p95_s": _pct(lags, 95),
        "all_queryable_after_s": stored_window if complete_at else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--ingress", choices=["haproxy", "proxy"], default="haproxy",
                        help="Serve ingress mode of the Apiary under test")
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare ceiling")
    parser.add_argument("--drain-timeout", type=float, default=120.0,
                        help="seconds to wait for every span to become queryable")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    factory = RequestFactory()
    print(f"workload: {factory.spans} spans/request ({factory.traces} traces x "
          f"{factory.spans_per_trace} spans), {args.clients} clients, {args.duration:.0f} s",
          flush=True)

    figures: dict[str, Any] = {"clients": args.clients, "duration_s": args.duration,
                               "ingress": args.ingress}
    if not args.no_baseline:
        print("running the bare uvicorn ceiling ...", flush=True)
        figures["baseline"] = baseline(args, factory)
        print(f"  ceiling: {figures['baseline']['accepted_spans_per_s']:,.0f} spans/s", flush=True)

    data_dir = Path(tempfile.mkdtemp(prefix="apiary-bench-"))
    port = spare_port()
    print(f"starting apiary up on :{port} (data dir {data_dir}) ...", flush=True)
    apiary = start_apiary(args, data_dir, port)
    try:
        connection = json.loads((data_dir / "connection.json").read_text())
        counter = StoredCounter(connection["url"], connection["api_key"])
        sampler = TreeSampler(apiary.pid)
        sampler.start()
        # Read before the load too: a failure shows at once, not after the run.
        ray_address = json.loads((data_dir / "state.json").read_text())["ray_address"]
        actors = actor_table(ray_address)
        cpu0 = sampler.cpu_seconds()
        roles0 = sampler.cpu_by_role()
        pids0 = sampler.cpu_by_pid()
        me = psutil.Process()
        generator0 = cpu_seconds(me, children=False)  # its only child is `apiary up`
        print("loading ...", flush=True)
        run = asyncio.run(platform_run(args, factory, counter, f"{connection['url']}/v1/traces",
                                       connection["api_key"]))
        sampler.stop()
        generator_seconds = cpu_seconds(me, children=False) - generator0
        try:  # again, for actors started during the load (a second replica)
            actors.update(actor_table(ray_address))
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
            print(f"  actor table after the load unreadable, using the one before: {exc}",
                  flush=True)
        groups = classify(sampler.procs(), actors)
        labels = {p.pid: label(p, actors) for p in sampler.procs()}
        load: LoadResult = run.pop("load")
        exact = counter.exact()
        busy = run["all_queryable_after_s"] or load.duration
        breakdown = cpu_breakdown(pids0, sampler.cpu_by_pid(), groups, labels,
                                  generator_seconds, int(exact["events"]), busy)
        figures["apiary"] = {
            **run,
            "acked_spans": load.acked_spans,
            "found_events": int(exact["events"]),
            "completeness": int(exact["events"]) / load.acked_spans if load.acked_spans else 0,
            "duplicate_rows_stored": int(exact["rows"]) - int(exact["events"]),
            "statuses": load.statuses,
            "client_errors": load.errors,
            "platform_cpu_cores": (sampler.cpu_seconds() - cpu0) / busy,
            "cpu_cores_by_process": {
                role: round((seconds - roles0.get(role, 0.0)) / busy, 3)
                for role, seconds in sorted(sampler.cpu_by_role().items())
            },
            "platform_peak_pss_gib": sampler.peak_pss / 1024**3,
            "platform_peak_rss_sum_gib": sampler.peak_rss / 1024**3,
            "pss_mib_by_process": {k: round(v / 1024**2) for k, v in
                                   sorted(sampler.pss_at_peak.items())},
            "cpu_window_s": busy,
            "cpu_per_stored_span": breakdown,
        }
        if "baseline" in figures:
            figures["apiary"]["ratio_to_ceiling"] = (
                figures["apiary"]["accepted_spans_per_s"]
                / figures["baseline"]["accepted_spans_per_s"])
    finally:
        apiary.send_signal(signal.SIGINT)
        try:
            apiary.wait(120)
        except subprocess.TimeoutExpired:
            apiary.kill()
    a = figures["apiary"]
    queryable_after = a["all_queryable_after_s"]
    stored_window = (f"all {a['acked_spans']:,} queryable after {queryable_after:.2f} s"
                     if queryable_after is not None else "INCOMPLETE: not every span stored")
    by_process = ", ".join(
        f"{k} {v:.2f}" for k, v in a["cpu_cores_by_process"].items() if v >= 0.01)
    print(
        "\nresults\n"
        f"  accepted spans/s:         {a['accepted_spans_per_s']:,.0f}\n"
        f"  stored spans/s:           {a['stored_spans_per_s']:,.0f} "
        f"({stored_window})\n"
        f"  ack latency p50 / p99:    {a['ack_p50_ms']:.1f} ms / {a['ack_p99_ms']:.1f} ms\n"
        f"  ingest-to-queryable lag:  p50 {a['lag_p50_s']:.2f} s / p95 {a['lag_p95_s']:.2f} s\n"
        f"  completeness:             {a['found_events']:,}/{a['acked_spans']:,} = "
        f"{a['completeness']:.4%}\n"
        f"  duplicates:               {a['duplicate_rows_stored']} rows stored twice "
        "(reads collapse versions in any case)\n"
        f"  HTTP statuses:            {a['statuses']} (client errors {a['client_errors']})\n"
        f"  platform CPU:             {a['platform_cpu_cores']:.2f} cores ({by_process})\n"
        f"  platform memory:          {a['platform_peak_pss_gib']:.2f} GiB PSS peak "
        f"(RSS sum {a['platform_peak_rss_sum_gib']:.2f} GiB; MiB by process: "
        f"{', '.join(f'{k} {v}' for k, v in a['pss_mib_by_process'].items())})"
    )
    print(cpu_table(a["cpu_per_stored_span"], a["found_events"], a["cpu_window_s"]))
    if "baseline" in figures:
        b = figures["baseline"]
        print(f"  bare uvicorn ceiling:     {b['accepted_spans_per_s']:,.0f} spans/s "
              f"(p99 {b['ack_p99_ms']:.1f} ms); Apiary accepts "
              f"{a['ratio_to_ceiling']:.0%} of it")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
