"""bench/federation: config-push latency and stream reconnect time between a control plane
and its data planes.

Usage: bench/federation [--data-planes 1] [--changes 200] [--reconnects 3] [--json PATH]
                        [--keep]

Everything runs for real on this machine: one control plane (``apiary up --plane
control``) and one or two data planes (``apiary up --plane data --control-plane URL
--bootstrap-token T``), each a separate process with its own data directory, nats-server,
chDB, secrets and local Ray (``bench/_planes.py``, the harness ``tests/federation`` uses
too). A project is assigned to data plane 1 and a Python metric defined for it.

Figures:

1. config-push latency: ``--changes`` changes committed one after another at the control
   plane (each an update of the metric: one HTTP call, one config-log entry), from the
   control plane's answer (the change is committed) until data plane 1 applied it durably
   (its applied config version, as its ``/readyz`` shows it, moved past the one before
   the change); p50, p99, max;
2. stream reconnect time: the control plane's process tree killed (SIGKILL) and started
   again on the same data directory, ``--reconnects`` times; from its federation endpoint
   serving again (a probe's ``Connect`` without identity is refused UNAUTHENTICATED) until
   every data plane's stream is up (the control plane lists it ``connected``); p50 and
   each run, and each run from the control plane's API answering again (``/cp/healthz``
   200; it starts before the endpoint). The data planes back off exponentially with full
   jitter while it is down (0.5 s doubling to ``federation_reconnect_max_s``, 5 s; it was a
   30 s cap before), so the figure includes the
   back-off the outage cost.

Prints the figures and, last, one JSON line with all of them (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench._planes import (
    ControlPlaneAdmin,
    Plane,
    control_plane,
    data_plane,
    federation_serves,
    free_port,
    until,
)

METRIC = "def evaluate(event):\n    return 1\n"


def _progress(started: float, message: str) -> None:
    print(f"[{time.monotonic() - started:7.1f}s] {message}", flush=True)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def config_push(admin: ControlPlaneAdmin, dp: Plane, project: str, changes: int,
                started: float) -> list[float]:
    """Seconds from each change's commit at the control plane to the data plane having
    applied it (its applied config version moved past the one before the change)."""
    made = admin.create_python_evaluator(project, f"bench_{uuid.uuid4().hex[:6]}", METRIC)
    before = dp.applied_config_version()
    until("the metric on the data plane", lambda: dp.applied_config_version() > before, 60)
    latencies: list[float] = []
    for i in range(changes):
        before = dp.applied_config_version()
        admin.update_evaluator(project, made["id"], description=f"change {i + 1}")
        committed = time.monotonic()
        until(f"change {i + 1} on the data plane",
              lambda b=before: dp.applied_config_version() > b, 60, 0.005)
        latencies.append(time.monotonic() - committed)
        if (i + 1) % 50 == 0:
            _progress(started, f"   {i + 1}/{changes} changes, p50 so far "
                      f"{statistics.median(latencies) * 1000:.0f} ms")
    return latencies


def reconnect(cp: Plane, admin: ControlPlaneAdmin, dp_ids: list[str], runs: int,
              started: float) -> list[dict[str, float]]:
    """Per run: seconds from the control plane's federation endpoint serving again (a
    probe's ``Connect`` is refused UNAUTHENTICATED) to every data plane's stream up
    (``listening_to_up_s``), and from its HTTP API answering (``answering_to_up_s``)."""
    assert cp.federation_port is not None
    results: list[dict[str, float]] = []
    for run in range(runs):
        cp.kill()
        _progress(started, f"   run {run + 1}: control plane killed; starting it again")
        cp.start()
        seen: dict[str, float] = {}

        def listening(seen: dict[str, float] = seen) -> bool:
            now = time.monotonic()
            if "answering" not in seen and _answers(cp):
                seen["answering"] = now
            if "listening" not in seen and federation_serves(
                    f"127.0.0.1:{cp.federation_port}", 1.0):
                seen["listening"] = now
            return len(seen) == 2
        until("the control plane to answer and listen", listening, 240, 0.01)
        admin.login()

        def all_connected() -> bool:
            listed = {p["id"]: p for p in admin.ok("GET", "/v1/data-planes")}
            return all(listed[i]["connected"] for i in dp_ids)
        until("every data plane's stream", all_connected, 120, 0.01)
        up = time.monotonic()
        results.append({"listening_to_up_s": up - seen["listening"],
                        "answering_to_up_s": up - seen["answering"]})
        cp.wait_ready()
        _progress(started, f"   run {run + 1}: streams up {results[-1]['listening_to_up_s']:.2f} s "
                  "after the federation endpoint served again "
                  f"({results[-1]['answering_to_up_s']:.2f} s after the API answered)")
    return results


def _answers(cp: Plane) -> bool:
    try:
        return httpx.get(f"{cp.cp_url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    started = time.monotonic()
    cp = control_plane(base)
    planes: list[Plane] = [cp]
    try:
        _progress(started, f"starting the control plane ({base / 'cp'})")
        cp.start().wait_ready()
        admin = ControlPlaneAdmin(cp.cp_url, cp.connection()["admin_email"],
                                  cp.admin_password())
        dps: list[Plane] = []
        dp_ids: list[str] = []
        for i in range(args.data_planes):
            port = free_port()
            created = admin.create_data_plane(f"bench-dp{i + 1}", f"http://127.0.0.1:{port}")
            dps.append(data_plane(base, f"dp{i + 1}", cp.cp_url, created["bootstrap_token"],
                                  port=port))
            dp_ids.append(str(created["id"]))
        planes += dps
        _progress(started, f"starting {len(dps)} data plane(s)")
        for dp in dps:
            dp.start()
        for dp in dps:
            dp.wait_ready()

        def connected() -> bool:
            listed = admin.data_planes()
            return all(listed[i]["connected"] for i in dp_ids)
        until("the data planes' streams", connected, 120)
        _progress(started, "planes up and connected")
        project = admin.create_project(admin.first_workspace(), f"bench-{uuid.uuid4().hex[:6]}")
        admin.assign(project, dp_ids[0])

        _progress(started, f"1. config push: {args.changes} changes")
        latencies = config_push(admin, dps[0], project, args.changes, started)
        _progress(started, f"2. stream reconnect: {args.reconnects} control-plane restarts")
        reconnects = reconnect(cp, admin, dp_ids, args.reconnects, started)
        admin.close()
        return {
            "data_planes": len(dps), "cpus": os.cpu_count(),
            "config_push": {
                "changes": len(latencies),
                "p50_ms": round(statistics.median(latencies) * 1000, 1),
                "p99_ms": round(_percentile(latencies, 0.99) * 1000, 1),
                "max_ms": round(max(latencies) * 1000, 1),
            },
            "reconnect": {
                "runs": len(reconnects),
                "p50_s": round(statistics.median(r["listening_to_up_s"] for r in reconnects), 2),
                "each_s": [round(r["listening_to_up_s"], 2) for r in reconnects],
                "from_api_answering_each_s": [round(r["answering_to_up_s"], 2)
                                              for r in reconnects],
            },
        }
    finally:
        _progress(started, "stopping the planes")
        for plane in reversed(planes):
            plane.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="bench/federation", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-planes", type=int, choices=(1, 2), default=1,
                        help="data planes to start (default 1)")
    parser.add_argument("--changes", type=int, default=200,
                        help="config changes to time (default 200)")
    parser.add_argument("--reconnects", type=int, default=3,
                        help="control-plane restarts to time (default 3)")
    parser.add_argument("--json", type=Path, help="also write the JSON result here")
    parser.add_argument("--keep", action="store_true",
                        help="keep the data directories (printed) after the run")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="apiary-bench-federation-"))
    try:
        result = run(args, base)
    finally:
        if args.keep:
            print(f"data directories kept in {base}")
        else:
            import shutil

            shutil.rmtree(base, ignore_errors=True)
    push, again = result["config_push"], result["reconnect"]
    print(f"\nbench/federation: {result['cpus']} CPUs, {result['data_planes']} data plane(s)")
    print(f"  config push ({push['changes']} changes, commit -> applied on the data plane): "
          f"p50 {push['p50_ms']:.0f} ms, p99 {push['p99_ms']:.0f} ms, max {push['max_ms']:.0f} ms")
    print("  stream reconnect (control plane killed and restarted, federation endpoint "
          f"serving -> streams up): p50 {again['p50_s']:.2f} s over {again['runs']} runs "
          f"{again['each_s']} (from the API answering: {again['from_api_answering_each_s']})")
    line = json.dumps(result)
    if args.json:
        args.json.write_text(line + "\n")
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
