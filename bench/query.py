"""bench/query: read latencies of the query layer over 1M stored events.

Usage: bench/query [--events 1000000] [--repeat 30] [--dir PATH] [--reuse] [--seed 7]

1. Load: a fresh embedded ClickHouse (chDB) directory is migrated and filled with
   ``--events`` events straight through :class:`~apiary.store.EventStore` (Arrow inserts of
   :func:`~apiary.store.events_to_arrow` batches, as the writers do, so the materialized
   views run) — not through the API. The data is realistic: sessions of ~10 events (a
   session, a chain, model calls with GenAI fields — model, provider, tokens, cost,
   messages — tool calls, some failing) over 30 days, 5,000 users in
   ``metadata.user_id``, and 20 experiment runs of 200 datapoints whose chains carry
   ``metrics`` scores and ``metadata.run_id``/``datapoint_id``/``dataset_id``.
   ``--dir`` keeps the data (``--reuse`` measures an existing one without loading).
2. Measure, in-process, each read ``--repeat`` times (after one warm-up) with a different
   target each time, and report p50/p95 wall time:

   - session tree: ``GET /v1/sessions/{id}`` → ``EventStore.session_tree``;
   - filtered export page: ``POST /v1/events/export`` with ``metadata.user_id is X``,
     ``event_type is model``, a 14-day ``dateRange`` and ``limit`` 100;
   - run result: ``GET /v1/runs/{id}/result`` → ``EventStore.run_result_rows`` and
     :func:`apiary.dataplane.experiments.results.build_result` (the run object itself comes from
     dpdb and is not part of the figure);
   - chart queries (``POST /v1/charts/query`` → ``EventStore.chart_data``): p95 latency
     by model per hour over 7 days, event count per day over 30 days, cost by user (top
     10) over 30 days, error rate by event name per day, a run metric per day, and
     session count per hour (from the ``session_aggregates`` rollup).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apiary.dataplane.experiments.results import build_result  # noqa: E402
from apiary.event import Event, Tenant, new_event  # noqa: E402
from apiary.store import EmbeddedClickHouse, EventStore, events_to_arrow  # noqa: E402

PROJECT = "bench-query"
TENANT: Tenant = {"org_id": "org-bench", "workspace_id": "ws-bench", "project_id": PROJECT}
END_MS = 1_748_736_000_000  # 2025-06-01T00:00:00Z: the newest event
DAY = 86_400_000
USERS = 5_000
RUNS, RUN_DATAPOINTS = 20, 200
BATCH = 50_000
MODELS = (("gpt-4o-mini", "openai", 0.15, 0.6), ("gpt-4o", "openai", 2.5, 10.0),
          ("claude-3-5-sonnet", "anthropic", 3.0, 15.0), ("llama-3.1-70b", "meta", 0.9, 0.9))
_WORDS = ("invoice", "refund", "policy", "customer", "order", "shipping", "delay", "apology",
          "escalation", "ticket", "summary", "context", "retrieval", "document", "chunk",
          "embedding", "ranking", "prompt", "template", "answer", "question", "account",
          "password", "settings", "security", "billing", "plan")


def _texts(rng: random.Random, n: int, size: int) -> list[str]:
    return [" ".join(rng.choice(_WORDS) for _ in range(size // 7))[:size] for _ in range(n)]


@dataclass
class Loaded:
    """What the measurements pick their targets from."""

    sessions: list[str] = field(default_factory=list)
    runs: dict[str, list[str]] = field(default_factory=dict)
    events: int = 0


class Generator:
    """Sessions of ~10 events, deterministic for a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.prompts = _texts(self.rng, 64, 400)
        self.answers = _texts(self.rng, 64, 600)
        self.snippets = _texts(self.rng, 64, 200)

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def session(self, start: float, run: tuple[str, int] | None) -> list[Event]:
        rng = self.rng
        sid = self._id()
        user = f"user-{rng.randrange(USERS)}"
        meta: dict[str, Any] = {"user_id": user, "env": "prod"}
        if run is not None:
            meta.update(run_id=run[0], dataset_id=f"ds-{run[0][:8]}",
                        datapoint_id=f"dp-{run[1]}")
        children = rng.randint(6, 10)
        end = start + 400.0 + children * 900.0
        out: list[Event] = [new_event(
            event_id=sid, session_id=sid, event_type="session", event_name="support-chat",
            source="evaluation" if run else "production", start_time=start, end_time=end,
            duration=end - start, metadata=dict(meta), user_properties={"plan": "pro"},
            inputs={"question": rng.choice(self.prompts)[:120]})]
        chain = self._id()
        metrics: dict[str, Any] = {}
        if run is not None:
            metrics = {"accuracy": round(rng.random(), 3), "relevance": round(rng.random(), 3),
                       "exact_match": rng.random() < 0.6}
        out.append(new_event(
            event_id=chain, session_id=sid, parent_id=sid, event_type="chain",
            event_name="answer", source=out[0]["source"], start_time=start + 5,
            end_time=end - 5, duration=end - start - 10, metadata=dict(meta),
            metrics=metrics, outputs={"answer": rng.choice(self.answers)}))
        t = start + 20.0
        for i in range(children):
            eid = self._id()
            if i % 2 == 0:
                model, provider, p_in, p_out = MODELS[rng.randrange(len(MODELS))]
                prompt, completion = rng.randint(200, 3000), rng.randint(20, 600)
                duration = float(rng.randint(300, 6000))
                out.append(new_event(
                    event_id=eid, session_id=sid, parent_id=chain, event_type="model",
                    event_name=f"{provider}.chat", source=out[0]["source"], start_time=t,
                    end_time=t + duration, duration=duration,
                    config={"model": model, "provider": provider, "temperature": 0.2},
                    inputs={"chat_history": [
                        {"role": "system", "content": "You are a helpful support agent."},
                        {"role": "user", "content": rng.choice(self.prompts)}]},
                    outputs={"role": "assistant", "content": rng.choice(self.answers)},
                    metadata={**meta, "prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion,
                              "cost": round((prompt * p_in + completion * p_out) / 1e6, 8)},
                    error="RateLimitError: 429" if rng.random() < 0.02 else None))
            else:
                duration = float(rng.randint(20, 900))
                out.append(new_event(
                    event_id=eid, session_id=sid, parent_id=chain, event_type="tool",
                    event_name=rng.choice(("search_docs", "lookup_order", "rerank")),
                    source=out[0]["source"], start_time=t, end_time=t + duration,
                    duration=duration, inputs={"query": rng.choice(self.snippets)[:80]},
                    outputs={"results": [rng.choice(self.snippets) for _ in range(2)]},
                    metadata=dict(meta), error="timeout" if rng.random() < 0.05 else None))
            t += duration + 50.0
        return out

    def all(self, n: int, loaded: Loaded) -> Iterator[list[Event]]:
        """Batches of about :data:`BATCH` events, ``n`` in total."""
        runs = [self._id() for _ in range(RUNS)]
        sessions = n // 10
        run_slots = {i * (sessions // (RUNS * RUN_DATAPOINTS + 1)): (runs[i // RUN_DATAPOINTS],
                                                                      i % RUN_DATAPOINTS)
                     for i in range(RUNS * RUN_DATAPOINTS)}
        batch: list[Event] = []
        made = s = 0
        while made < n:
            start = END_MS - 30 * DAY + min(1.0, s / max(1, sessions)) * 30 * DAY - 600_000
            run = run_slots.get(s)
            s += 1
            events = self.session(start, run)[:n - made]
            made += len(events)
            if run is not None:
                loaded.runs.setdefault(run[0], []).append(events[0]["session_id"])
            elif self.rng.random() < 0.01:
                loaded.sessions.append(events[0]["session_id"])
            batch.extend(events)
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch
        loaded.events = made


def load(store: EventStore, n: int, seed: int) -> Loaded:
    loaded = Loaded()
    started = time.perf_counter()
    generate = convert = insert = 0.0
    batches = Generator(seed).all(n, loaded)
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        t1 = time.perf_counter()
        generate += t1 - t0
        if batch is None:
            break
        table = events_to_arrow(TENANT, 1, batch)
        t2 = time.perf_counter()
        store.insert_arrow(table)
        t3 = time.perf_counter()
        convert, insert = convert + t2 - t1, insert + t3 - t2
        print(f"  loaded {loaded_rows(store):>9,} rows", end="\r", flush=True)
    total = time.perf_counter() - started
    print(f"  loaded {loaded.events:,} events in {total:.1f} s (generate {generate:.1f} s, "
          f"events_to_arrow {convert:.1f} s, insert {insert:.1f} s: "
          f"{loaded.events / insert:,.0f} rows/s)")
    return loaded


def loaded_rows(store: EventStore) -> int:
    return store.count_rows(PROJECT)


def discover(store: EventStore) -> Loaded:
    """The targets of an existing data directory (``--reuse``)."""
    loaded = Loaded(events=store.count_events(PROJECT))
    rows = store.driver.query_rows(
        f"SELECT session_id FROM `{store.database}`.events WHERE project_id = {{p:String}} "
        "AND event_type = 'session' AND source = 'production' ORDER BY cityHash64(session_id) "
        "LIMIT 1000", {"p": PROJECT})
    loaded.sessions = [r["session_id"] for r in rows]
    for row in store.driver.query_rows(
            f"SELECT JSONExtractString(metadata, 'run_id') AS run, groupArray(session_id) AS s "
            f"FROM `{store.database}`.events WHERE project_id = {{p:String}} AND "
            "event_type = 'session' AND source = 'evaluation' GROUP BY run", {"p": PROJECT}):
        loaded.runs[row["run"]] = list(row["s"])
    return loaded


def measure(name: str, repeat: int, call: Callable[[int], Any]) -> dict[str, Any]:
    call(-1)  # warm-up
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    row = {"name": name, "p50": statistics.median(times), "p95": p95, "n": repeat}
    print(f"  {name:<58} p50 {row['p50']:8.1f} ms   p95 {p95:8.1f} ms")
    return row


def run_object(run_id: str, sessions: list[str]) -> dict[str, Any]:
    return {"id": run_id, "run_id": run_id, "status": "completed", "metadata": {},
            "results": {}, "event_ids": sessions, "configuration": {}, "is_active": True,
            "created_at": "2025-06-01T00:00:00Z", "scope_type": "project",
            "scope_id": PROJECT}


def queries(store: EventStore, loaded: Loaded, repeat: int) -> list[dict[str, Any]]:
    rng = random.Random(1)
    sessions = rng.sample(loaded.sessions, min(len(loaded.sessions), repeat + 1))
    runs = sorted(loaded.runs)
    users = [f"user-{rng.randrange(USERS)}" for _ in range(repeat + 1)]
    week = {"$gte": END_MS - 7 * DAY, "$lte": END_MS}
    month = {"$gte": END_MS - 30 * DAY, "$lte": END_MS}
    results = []

    def tree(i: int) -> None:
        node = store.session_tree(PROJECT, sessions[i % len(sessions)])
        assert node["children"]

    def export(i: int) -> None:
        store.export(PROJECT, {"filters": [
            {"field": "metadata.user_id", "operator": "is", "value": users[i],
             "type": "string"},
            {"field": "event_type", "operator": "is", "value": "model", "type": "string"}],
            "dateRange": {"$gte": END_MS - 14 * DAY, "$lte": END_MS}, "limit": 100})

    def result(i: int) -> None:
        run_id = runs[i % len(runs)]
        rows = store.run_result_rows(PROJECT, run_id, loaded.runs[run_id], "average")
        body = build_result(run_object(run_id, loaded.runs[run_id]), rows, "average", {})
        assert len(body["datapoints"]) == RUN_DATAPOINTS

    results.append(measure("session tree (GET /v1/sessions/{id})", repeat, tree))
    results.append(measure("filtered export page (user + type + 14 d, limit 100)", repeat,
                           export))
    results.append(measure(f"run result ({RUN_DATAPOINTS} datapoints, 3 metrics)", repeat,
                           result))
    charts = [
        ("chart: p95 duration by model, hourly, 7 d",
         {"metric": "duration", "func": "p95", "groupBy": "model", "bucketing": "hour",
          "dateRange": week}),
        ("chart: event count, daily, 30 d",
         {"metric": "event_count", "bucketing": "day", "dateRange": month}),
        ("chart: cost by metadata.user_id (top 10), 30 d",
         {"metric": "cost", "groupBy": "metadata.user_id", "bucketing": "all",
          "dateRange": month}),
        ("chart: error rate by event_name, daily, 30 d",
         {"metric": "error_rate", "groupBy": "event_name", "bucketing": "day",
          "dateRange": month}),
        ("chart: avg metrics.accuracy, daily, 30 d",
         {"metric": "metrics.accuracy", "bucketing": "day", "dateRange": month}),
        ("chart: session count, hourly, 7 d (session_aggregates)",
         {"metric": "session_count", "bucketing": "hour", "dateRange": week}),
    ]
    for name, request in charts:
        def chart(i: int, request: dict[str, Any] = request) -> None:
            store.chart_data(PROJECT, request)
        results.append(measure(name, repeat, chart))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--dir", type=Path, default=None,
                        help="chDB data directory to use and keep (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the data already in --dir (no load)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.reuse and args.dir is None:
        parser.error("--reuse needs --dir")
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        path = args.dir or Path(tmp)
        path.mkdir(parents=True, exist_ok=True)
        driver = EmbeddedClickHouse(path, database="apiary")
        store = EventStore(driver)
        try:
            store.migrate()
            if args.reuse:
                loaded = discover(store)
                print(f"reusing {path}: {loaded.events:,} events")
            else:
                if store.count_rows(PROJECT):
                    parser.error(f"{path} already holds data: pass --reuse or a fresh --dir")
                print(f"loading {args.events:,} events into {path}")
                loaded = load(store, args.events, args.seed)
            parts = driver.query_rows(
                "SELECT count() AS n FROM system.parts WHERE database = 'apiary' AND "
                "table = 'events' AND active")[0]["n"]
            print(f"measuring ({args.repeat} runs each; events table in {parts} parts)")
            queries(store, loaded, args.repeat)
        finally:
            store.close()


if __name__ == "__main__":
    main()
