"""bench/jetstream: what encrypting the JetStream store at rest costs the nats-server.

Usage: bench/jetstream [--messages 4000] [--size 65536] [--inflight 64] [--rounds 3] [--json]

For each store mode (``plaintext``; ``aes``, Apiary's embedded default; ``chachapoly``)
starts a nats-server on a fresh store, with the embedded server's settings
(``sync_interval: always``, a file stream), and:

- **publish**: ``--messages`` messages of ``--size`` bytes, ``--inflight`` awaiting their
  acknowledgement at once (as concurrent ingest requests do);
- **consume**: reads them all back through a durable pull consumer, acknowledging each
  (as the writers do), right after they were published (mostly from the server's cache);
- **reread**: restarts the server and reads them all again through a new consumer: every
  block is loaded from disk (and decrypted), as after a restart with a backlog.

It reports, per phase, the nats-server's CPU time (user + system, from psutil: the machine
may be shared, so wall time is not the measure) per message and per MiB, and the wall-clock
throughput for reference. Modes alternate for ``--rounds`` rounds; the best (least CPU) of
each is printed. The message contents do not change the cipher's cost; they are text-like.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
import psutil

from apiary.queue import nats_server_binary

MODES = ("plaintext", "aes", "chachapoly")
KEY = "YmVuY2gtb25seS1rZXktbm90LWEtc2VjcmV0LTAxMjM0NTY3"  # a benchmark's key, not a secret


def _config(root: Path, mode: str) -> Path:
    lines = ["listen: 127.0.0.1:-1", "max_payload: 8388608", "jetstream {",
             f"  store_dir: {json.dumps(str(root / 'jetstream'))}", "  sync_interval: always"]
    if mode != "plaintext":
        lines += [f"  cipher: {mode}", f"  key: {json.dumps(KEY)}"]
    config = root / "nats-server.conf"
    config.write_text("\n".join([*lines, "}", ""]))
    return config


def _start(root: Path, mode: str) -> tuple[subprocess.Popen[bytes], str]:
    ports = root / "ports"
    ports.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [nats_server_binary(), "-c", str(_config(root, mode)), "--ports_file_dir", str(ports)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ports_file = ports / f"nats-server_{process.pid}.ports"
    deadline = time.monotonic() + 20
    while not ports_file.exists() or not ports_file.read_text().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"nats-server ({mode}) did not start")
        time.sleep(0.05)
    return process, json.loads(ports_file.read_text())["nats"][0]


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _payload(size: int) -> bytes:
    words = b"the model returned a structured answer about invoices refunds and policy "
    return (words * (size // len(words) + 1))[:size]


async def _run(url: str, proc: psutil.Process, messages: int, size: int,
               inflight: int) -> dict[str, dict[str, float]]:
    nc = await nats.connect(url, allow_reconnect=False)
    js = nc.jetstream()
    await js.add_stream(name="BENCH", subjects=["bench.>"])
    body = _payload(size)
    window = asyncio.Semaphore(inflight)

    async def publish(i: int) -> None:
        async with window:
            await js.publish("bench.events", body, headers={"Nats-Msg-Id": f"m{i}"})

    result: dict[str, dict[str, float]] = {}
    cpu0, wall0 = _cpu(proc), time.perf_counter()
    await asyncio.gather(*(publish(i) for i in range(messages)))
    result["publish"] = {"cpu_s": _cpu(proc) - cpu0, "wall_s": time.perf_counter() - wall0}

    result["consume"] = await _consume(js, proc, messages, "reader")
    await nc.close()
    return result


async def _consume(js: Any, proc: psutil.Process, messages: int,
                   durable: str) -> dict[str, float]:
    sub = await js.pull_subscribe("bench.>", durable=durable, stream="BENCH")
    got = 0
    cpu0, wall0 = _cpu(proc), time.perf_counter()
    while got < messages:
        batch = await sub.fetch(min(256, messages - got), timeout=30)
        for msg in batch:
            await msg.ack()
        got += len(batch)
    return {"cpu_s": _cpu(proc) - cpu0, "wall_s": time.perf_counter() - wall0}


async def _reread(url: str, proc: psutil.Process, messages: int) -> dict[str, float]:
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        return await _consume(nc.jetstream(), proc, messages, "rereader")
    finally:
        await nc.close()


def measure(mode: str, messages: int, size: int, inflight: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix=f"bench-js-{mode}-") as tmp:
        process, url = _start(Path(tmp), mode)
        try:
            result = asyncio.run(_run(url, psutil.Process(process.pid), messages, size,
                                      inflight))
        finally:
            process.terminate()
            process.wait(15)
        process, url = _start(Path(tmp), mode)
        try:
            result["reread"] = asyncio.run(_reread(url, psutil.Process(process.pid), messages))
        finally:
            process.terminate()
            process.wait(15)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/jetstream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--size", type=int, default=65536)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    best: dict[str, dict[str, dict[str, float]]] = {}
    for _ in range(args.rounds):
        for mode in modes:
            run = measure(mode, args.messages, args.size, args.inflight)
            for phase, figures in run.items():
                kept = best.setdefault(mode, {}).get(phase)
                if kept is None or figures["cpu_s"] < kept["cpu_s"]:
                    best[mode][phase] = figures
    mib = args.messages * args.size / 2**20
    rows: list[dict[str, Any]] = []
    for mode in modes:
        for phase in ("publish", "consume", "reread"):
            f = best[mode][phase]
            base = best.get("plaintext", {}).get(phase)
            rows.append({
                "mode": mode, "phase": phase,
                "cpu_us_per_msg": f["cpu_s"] / args.messages * 1e6,
                "cpu_ms_per_mib": f["cpu_s"] / mib * 1e3,
                "cpu_vs_plaintext": f["cpu_s"] / base["cpu_s"] if base else None,
                "msgs_per_s_wall": args.messages / f["wall_s"],
            })
    if args.json:
        print(json.dumps({"messages": args.messages, "size": args.size,
                          "inflight": args.inflight, "rounds": args.rounds, "rows": rows}))
        return 0
    print(f"{args.messages} messages x {args.size} B, {args.inflight} in flight, "
          f"best of {args.rounds} rounds (nats-server CPU time, user + system)")
    print(f"{'mode':<11} {'phase':<8} {'CPU µs/msg':>11} {'CPU ms/MiB':>11} "
          f"{'vs plain':>9} {'msgs/s (wall)':>14}")
    for r in rows:
        ratio = "-" if r["cpu_vs_plaintext"] is None else f"{r['cpu_vs_plaintext']:.2f}x"
        print(f"{r['mode']:<11} {r['phase']:<8} {r['cpu_us_per_msg']:>11.1f} "
              f"{r['cpu_ms_per_mib']:>11.2f} {ratio:>9} {r['msgs_per_s_wall']:>14,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
