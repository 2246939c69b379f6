"""bench/alerts: what an alert rule costs to evaluate at 1M events, and how long a
notification takes from its publish to a webhook receiver.

Usage: bench/alerts [--events 1000000] [--repeat 20] [--notifications 200] [--dir PATH]
                    [--final]

Everything runs for real on this machine: embedded chDB (in this process, as the chDB owner
actor holds it), an embedded nats-server, the alert evaluator
(:class:`~apiary.dataplane.alerts.evaluator.AlertEvaluator`) and a notifier
(:class:`~apiary.dataplane.notifications.service.NotifierService`) delivering to a local
webhook receiver.

Figures:

1. **evaluation cost per rule** (ms, p50/p95 over ``--repeat`` window ends spread over the
   data's 30 days), for a few rule kinds over the data of bench/query (LLM-like traces,
   ``bench/_query_data.py``): the measurement alone (its ClickHouse queries), the preview
   of two of them (60 points over a day), then one evaluator cycle over all the rules
   divided by their number (queries, the rule state's reads and compare-and-set writes in
   JetStream, nothing to publish);
2. **delivery latency** (ms, p50/p99): one alert notification at a time published to
   ``notifications.<org>.<project>`` (durable: JetStream acknowledged it) until the webhook
   receiver has read the signed request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from nats.js.api import KeyValueConfig, StorageType  # noqa: E402

from apiary.dataplane.alerts.evaluator import AlertEvaluator  # noqa: E402
from apiary.dataplane.alerts.measure import measure  # noqa: E402
from apiary.dataplane.alerts.preview import alert_preview  # noqa: E402
from apiary.dataplane.alerts.rules import AlertRule, parse_rule  # noqa: E402
from apiary.dataplane.alerts.state import STATE_BUCKET as ALERT_STATE_BUCKET  # noqa: E402
from apiary.dataplane.alerts.state import StateStore  # noqa: E402
from apiary.dataplane.evaluation.proxy.envelope import envelope_from_settings  # noqa: E402
from apiary.dataplane.notifications.alerting import notify_with  # noqa: E402
from apiary.dataplane.notifications.channels import channel_entry  # noqa: E402
from apiary.dataplane.notifications.message import (  # noqa: E402
    AlertNotification,
    publish_notification,
)
from apiary.dataplane.notifications.service import NotifierService  # noqa: E402
from apiary.dataplane.replica.federation_state import (  # noqa: E402
    CONFIG_BUCKET,
    PROJECTS_KEY,
    STATE_BUCKET,
)
from apiary.queue import NatsServer, connect, ensure_topology  # noqa: E402
from apiary.settings import ApiarySettings  # noqa: E402
from apiary.store import DirectStoreClient, EmbeddedClickHouse, EventStore  # noqa: E402
from bench._query_data import END_MS, PROJECT, SPAN_DAYS, TENANT, load  # noqa: E402

HOUR = 3600
#: The rules measured: name → condition (bench/query's data: ~1,400 events an hour).
RULES: dict[str, dict[str, Any]] = {
    "error rate, 1 h": {"type": "aggregate", "field": "error_rate", "window_s": HOUR,
                        "warning": {"op": ">=", "value": 0.05}},
    "model calls, 1 h (filter)": {
        "type": "aggregate", "field": "event_count", "window_s": HOUR,
        "filters": [{"field": "event_type", "operator": "is", "value": "model"}],
        "warning": {"op": "<", "value": 10}},
    "p95 latency drift, 1 h vs 1 h": {
        "type": "drift", "field": "latency_p95", "window_s": HOUR, "comparison_window_s": HOUR,
        "direction": "up", "warning": {"op": ">=", "value": 0.5}},
    "cost of one tenant, 1 day (metadata filter)": {
        "type": "aggregate", "field": "cost", "window_s": 24 * HOUR,
        "filters": [{"field": "metadata.app.tenant", "operator": "is", "value": "tenant-3"}],
        "warning": {"op": ">", "value": 100}},
    "p99 latency, 1 day": {"type": "aggregate", "field": "latency_p99", "window_s": 24 * HOUR,
                           "warning": {"op": ">", "value": 60_000}},
}

#: Rules whose preview is timed too.
PREVIEWED = ("error rate, 1 h", "p95 latency drift, 1 h vs 1 h")


def _say(line: str) -> None:
    print(line, flush=True)


def _rule(name: str, condition: dict[str, Any], i: int) -> AlertRule:
    return parse_rule({"version": 1, "project_id": PROJECT, "object": {
        "id": f"bench-{i}", "project_id": PROJECT, "name": name,
        "condition": {"filters": [], "min_duration_s": 0, **condition}}})


def _ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return 1000.0 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _timed(repeat: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    await call(0)  # warm-up
    out = []
    for i in range(1, repeat + 1):
        t0 = time.perf_counter()
        await call(i)
        out.append(time.perf_counter() - t0)
    return out


def _window_ends(repeat: int) -> list[int]:
    """``repeat`` hour-aligned window ends spread over the data's last 29 days."""
    end = END_MS // 1000
    span = (SPAN_DAYS - 1) * 86_400
    return [(end - span + span * (i + 1) // (repeat + 1)) // HOUR * HOUR
            for i in range(repeat + 1)]


async def evaluation_cost(store: EventStore, nats_url: str, settings: ApiarySettings,
                          repeat: int) -> list[dict[str, Any]]:
    client = DirectStoreClient(store)
    ends = _window_ends(repeat)
    rows: list[dict[str, Any]] = []
    for i, (name, condition) in enumerate(RULES.items()):
        rule = _rule(name, condition, i)
        values: list[float | None] = []

        async def once(k: int, rule: AlertRule = rule, values: list[float | None] = values
                       ) -> None:
            values.append((await measure(client, rule, ends[k])).value)

        samples = await _timed(repeat, once)
        shown = next((v for v in values if v is not None), None)
        rows.append({"rule": name, "p50_ms": _ms(samples, 0.5), "p95_ms": _ms(samples, 0.95),
                     "example_value": shown})
        _say(f"  {name}: p50 {_ms(samples, 0.5):.1f} ms, p95 {_ms(samples, 0.95):.1f} ms "
             f"(e.g. value {shown})")

    # The preview of a rule: 60 points over a day (one bucketed query when it can).
    for i, (name, condition) in enumerate(RULES.items()):
        if name not in PREVIEWED:
            continue
        alert = {"id": f"bench-{i}", "project_id": PROJECT, "name": name,
                 "condition": {"filters": [], "min_duration_s": 0, **condition}}

        async def preview(k: int, alert: dict[str, Any] = alert) -> None:
            end = ends[k] // 86_400 * 86_400
            await alert_preview(client, alert, end - 86_400, end, 60)

        samples = await _timed(min(repeat, 5), preview)
        rows.append({"rule": f"preview, 60 points over 1 day: {name}",
                     "p50_ms": _ms(samples, 0.5), "p95_ms": _ms(samples, 0.95),
                     "example_value": None})
        _say(f"  preview of {name} (60 points, 1 day): p50 {_ms(samples, 0.5):.1f} ms")

    # One evaluator cycle over all the rules, with their state in JetStream.
    nc = await connect(nats_url, name="bench-alerts-evaluator")
    try:
        js = nc.jetstream()
        with contextlib.suppress(Exception):  # a reused directory: evaluate afresh
            await js.delete_key_value(ALERT_STATE_BUCKET)
        for bucket in (CONFIG_BUCKET, STATE_BUCKET):
            with contextlib.suppress(Exception):
                await js.create_key_value(KeyValueConfig(bucket=bucket, history=1,
                                                         storage=StorageType.FILE))
        config = await js.key_value(CONFIG_BUCKET)
        for i, (name, condition) in enumerate(RULES.items()):
            await config.put(f"alert_rule.{PROJECT}.bench-{i}", orjson.dumps({
                "version": 1, "project_id": PROJECT, "object": {
                    "id": f"bench-{i}", "project_id": PROJECT, "name": name,
                    "condition": {"filters": [], "min_duration_s": 0, **condition}}}))
        state = await js.key_value(STATE_BUCKET)
        await state.put(PROJECTS_KEY, orjson.dumps({"projects": {PROJECT: {
            "org_id": TENANT["org_id"], "workspace_id": TENANT["workspace_id"]}}}))
        evaluator = AlertEvaluator(settings, js, client, await StateStore.open(js),
                                   notify_with(js))
        interval = settings.alert_interval_s

        async def cycle(k: int) -> None:
            await evaluator.evaluate_all(now=float(ends[k] + interval * k))

        samples = await _timed(repeat, cycle)
        per_rule = [s / len(RULES) for s in samples]
        rows.append({"rule": f"evaluator cycle, per rule ({len(RULES)} rules)",
                     "p50_ms": _ms(per_rule, 0.5), "p95_ms": _ms(per_rule, 0.95),
                     "example_value": None, "transitions": evaluator.stats.transitions,
                     "failed": evaluator.stats.failed})
        stats = evaluator.stats
        _say(f"  evaluator cycle over {len(RULES)} rules: p50 {_ms(samples, 0.5):.1f} ms "
             f"({_ms(per_rule, 0.5):.1f} ms per rule); {stats.evaluated} evaluated, "
             f"{stats.no_data} without data, {stats.failed} failed")
    finally:
        await nc.close()
    return rows


class _Receiver:
    """A minimal HTTP/1.1 webhook receiver: records when each request was read in full."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.arrived = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                at = time.time()
                alert_id = str(orjson.loads(body).get("alert_id"))
                self.arrivals.setdefault(alert_id, at)
                self.arrived.set()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                             b"Content-Type: application/json\r\n\r\n{}")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def delivery_latency(nats_url: str, settings: ApiarySettings,
                           count: int) -> dict[str, Any]:
    receiver = _Receiver()
    url = await receiver.start()
    nc = await connect(nats_url, name="bench-alerts-publisher")
    notifier = NotifierService(settings, nats_url, "bench-alerts-notifier")
    try:
        js = nc.jetstream()
        config = await js.key_value(CONFIG_BUCKET)
        key, value = channel_entry(
            {"id": "bench-hook", "org_id": "org-bench", "type": "webhook",
             "scope": {"type": "org", "id": "org-bench"},
             "severities": ["warning", "critical", "resolution"],
             "config": {"url": url, "secret": "whsec-bench-0123456789abcdef"}},
            envelope_from_settings(settings))
        await config.put(key, value)
        await notifier.start()
        latencies: list[float] = []
        run = uuid.uuid4().hex[:8]
        for i in range(count + 5):  # the first 5 warm the connection up
            alert_id = f"bench-{run}-{i}"
            receiver.arrived.clear()
            published = time.time()
            await publish_notification(js, AlertNotification(
                org_id="org-bench", alert_id=alert_id, alert_name="bench", stage="critical",
                state="triggered", value=1.0, threshold=0.9, window_s=60,
                window_end=int(published), project_id=PROJECT,
                fired_at=datetime.now(UTC)))
            deadline = time.monotonic() + 30
            while alert_id not in receiver.arrivals:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"notification {i} not delivered within 30 s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(receiver.arrived.wait(), 1.0)
                receiver.arrived.clear()
            if i >= 5:
                latencies.append(receiver.arrivals[alert_id] - published)
            if i and i % 50 == 0:
                _say(f"  {i}/{count + 5} notifications delivered")
        return {"count": len(latencies), "p50_ms": _ms(latencies, 0.5),
                "p99_ms": _ms(latencies, 0.99), "mean_ms": 1000 * statistics.mean(latencies)}
    finally:
        await notifier.stop()
        await nc.close()
        await receiver.stop()


async def _run(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    driver = EmbeddedClickHouse(path / "chdb", database="apiary")
    store = EventStore(driver)
    nats = NatsServer(path / "nats")
    nats_url = nats.start()
    settings = ApiarySettings(data_dir=path / "apiary", outbound_allowlist=("127.0.0.1",),
                              alert_interval_s=60)
    try:
        store.migrate()
        if not args.final:
            # As the chDB owner does: charts (the rules' measurements) read without FINAL.
            store.track_duplicates(background=False)
        nc = await connect(nats_url, name="bench-alerts")
        await ensure_topology(nc.jetstream(), settings)
        await nc.close()
        existing = store.count_rows(PROJECT)
        if existing:
            _say(f"reusing the {existing:,} events already in {path}")
            events = existing
        else:
            _say(f"loading {args.events:,} events (bench/query's traces over {SPAN_DAYS} "
                 "days)")
            t0 = time.perf_counter()
            targets = await asyncio.to_thread(load, store, args.events, args.seed, _say)
            events = targets.events
            _say(f"loaded {events:,} events in {time.perf_counter() - t0:.0f} s")
        _say(f"evaluation cost per rule ({args.repeat} window ends each)")
        rules = await evaluation_cost(store, nats_url, settings, args.repeat)
        _say(f"delivery latency ({args.notifications} notifications, one at a time)")
        delivery = await delivery_latency(nats_url, settings, args.notifications)
        return {"events": events, "rules": rules, "delivery": delivery,
                "chart_reads": dict(store.chart_reads)}
    finally:
        store.close()
        nats.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20,
                        help="window ends measured per rule")
    parser.add_argument("--notifications", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None,
                        help="working directory to keep (default: a temporary one); events "
                        "already loaded there are reused")
    parser.add_argument("--final", action="store_true",
                        help="collapse versions with FINAL, as before the duplicate register "
                        "(default: keep it, as the chDB owner does)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as tmp:
        path = args.dir or Path(tmp)
        path.mkdir(parents=True, exist_ok=True)
        report = asyncio.run(_run(args, path))
    print(f"\nevaluation cost per rule at {report['events']:,} events (chDB, in process)")
    print("| rule | p50 | p95 |\n|---|---|---|")
    for row in report["rules"]:
        print(f"| {row['rule']} | {row['p50_ms']:,.1f} ms | {row['p95_ms']:,.1f} ms |")
    reads = report["chart_reads"]
    print(f"charts read without FINAL: {reads['without_final']}, with FINAL: {reads['final']}")
    d = report["delivery"]
    print(f"\ndelivery latency, publish → webhook receiver ({d['count']} notifications): "
          f"p50 {d['p50_ms']:.1f} ms, p99 {d['p99_ms']:.1f} ms, mean {d['mean_ms']:.1f} ms")


if __name__ == "__main__":
    main()
