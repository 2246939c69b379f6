"""bench/sandbox: what the Python metric sandbox costs.

Usage: bench/sandbox [--jobs 3000] [--replacements 20]

Figures:

1. in-process baseline: the same trivial metric compiled with RestrictedPython and run
   with the sandbox's guards in this process (no isolation): the ceiling.
2. evaluations/s through a SandboxPool of size 1 and 2, with ``2 * size`` jobs in
   flight, workers reused (the default), and with a fresh process per evaluation
   (``max_jobs_per_worker=1``); p50/p99 latency of one evaluation.
3. start-up: a fresh interpreter importing the allowed libraries (what a worker would
   cost without the zygote) against the zygote's one-time preload and a fork.
4. worker replacement: a worker killed by its memory limit, until the pool is full
   again (fork + isolation + ready), median and p95 over ``--replacements`` runs.

The trivial metric: ``def evaluate(event): return len(event["outputs"]["content"])``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apiary.dataplane.evaluation.sandbox import SandboxLimits, SandboxPool, compile_metric  # noqa: E402
from apiary.dataplane.evaluation.sandbox.guards import PrintBuffer, restricted_globals  # noqa: E402
from apiary.errors import SandboxResourceLimit  # noqa: E402

TRIVIAL = 'def evaluate(event):\n    return len(event["outputs"]["content"])\n'
BOMB = 'def evaluate(event):\n    return "a" * 10 ** 10\n'
EVENT = {"event_type": "model", "event_name": "chat", "inputs": {"q": "What is Apiary?"},
         "outputs": {"content": "A tracing platform for LLM applications."},
         "metadata": {"model": "gpt-4o-mini", "tokens": 42}}


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def in_process(jobs: int) -> float:
    metric = compile_metric(TRIVIAL)
    started = time.perf_counter()
    for _ in range(jobs):
        glb = restricted_globals(PrintBuffer(8192))
        exec(metric.code, glb)
        glb[metric.entry](EVENT)
    return jobs / (time.perf_counter() - started)


async def throughput(size: int, jobs: int, max_jobs: int) -> tuple[float, float, float]:
    limits = SandboxLimits(max_jobs_per_worker=max_jobs)
    async with SandboxPool(size, limits) as pool:
        for _ in range(2 * size):  # warm the workers' compile caches
            await pool.run(TRIVIAL, EVENT)
        latencies: list[float] = []
        queue: asyncio.Queue[None] = asyncio.Queue()
        for _ in range(jobs):
            queue.put_nowait(None)

        async def client() -> None:
            while not queue.empty():
                queue.get_nowait()
                t = time.perf_counter()
                result = await pool.run(TRIVIAL, EVENT)
                latencies.append(time.perf_counter() - t)
                assert result.score == len(EVENT["outputs"]["content"])  # type: ignore[index]

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(2 * size)))
        elapsed = time.perf_counter() - started
    return jobs / elapsed, _pct(latencies, 50) * 1000, _pct(latencies, 99) * 1000


def cold_import() -> float:
    code = ("import sys; sys.path.append(sys.argv[1]); "
            "from apiary.dataplane.evaluation.sandbox import allowlist; allowlist.preload()")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-I", "-c", code, str(ROOT)], check=True, cwd="/")
    return time.perf_counter() - started


async def replacements(count: int) -> tuple[float, float, float, float]:
    async with SandboxPool(1, SandboxLimits(memory_mb=128)) as pool:
        preload = pool.stats.zygote_preload_s
        recovery: list[float] = []
        forks: list[float] = []
        for _ in range(count):
            started = time.perf_counter()
            with contextlib.suppress(SandboxResourceLimit):
                await pool.run(BOMB, EVENT)
            await pool.wait_full()
            recovery.append(time.perf_counter() - started)
            forks.append(pool.stats.last_fork_ms)
        assert (await pool.run(TRIVIAL, EVENT)).score is not None
    return preload, statistics.median(forks), _pct(forks, 95), statistics.median(recovery)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--replacements", type=int, default=20)
    args = parser.parse_args()

    print("Python metric sandbox — trivial metric, event of", len(str(EVENT)), "chars")
    print(f"  in-process (RestrictedPython + guards, no isolation): "
          f"{in_process(args.jobs):9.0f} evals/s")
    for max_jobs, label in ((1000, "reused workers"), (1, "fresh process per eval")):
        jobs = args.jobs if max_jobs > 1 else max(100, args.jobs // 10)
        for size in (1, 2):
            rate, p50, p99 = await throughput(size, jobs, max_jobs)
            print(f"  pool size {size}, {label:24s}: {rate:9.0f} evals/s   "
                  f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms   ({jobs} evals)")
    cold = cold_import()
    preload, fork_p50, fork_p95, recovery = await replacements(args.replacements)
    print(f"  fresh interpreter importing the allowed libraries: {cold * 1000:7.0f} ms")
    print(f"  zygote preload (once per pool):                    {preload * 1000:7.0f} ms")
    print(f"  worker replacement, fork -> isolated -> ready:     {fork_p50:7.1f} ms p50, "
          f"{fork_p95:.1f} ms p95")
    print(f"  memory bomb -> error -> pool full again:           {recovery * 1000:7.1f} ms p50")


if __name__ == "__main__":
    asyncio.run(main())
