"""bench/query: read latencies of the query layer, as the table of issue 18, at 1M or 10M events.

Usage: bench/query [--events 1000000] [--repeat 20] [--dir PATH] [--reuse] [--seed 7]
                   [--json PATH] [--no-extra] [--final]

By default the store keeps the duplicate register, as the chDB owner does (its load is
timed and printed), so exports read without FINAL over the project; ``--final`` measures
the reads as they were before it (versions collapsed with FINAL).

1. Load (bench/_query_data.py): a fresh embedded ClickHouse (chDB) directory is migrated
   and filled with ``--events`` events of LLM-like traces — 100k sessions of ~10 spans per
   1M events, GenAI fields, 0.5-2 KiB prompts and completions, ``metadata.app.tenant`` out
   of 50 tenants, 5,000 users, 20 experiment runs of 200 datapoints with ``metrics`` — over
   30 days. A template of 10,000 sessions is generated once and inserted as many times as
   needed with rewritten ids and shifted times, each copy one Arrow insert through
   :meth:`~apiary.store.EventStore.insert_arrow` (the writers' insert: the materialized
   views run). Progress, load time and on-disk size are printed. ``--dir`` keeps the data
   (``--reuse`` measures an existing one without loading; the targets are kept beside it).
2. Measure each read ``--repeat`` times (after one warm-up), with a different target where
   that is sensible, and print p50/p95 wall time. The reads go through the store methods
   the data-plane routes call, in this process (``EventStore`` on embedded chDB: what the
   route's store client reaches, without the Ray hop to the chDB owner or HTTP), with the
   route's own request model for exports (``ExportRequest(...).to_query()``):

   - ``GET /v1/sessions?limit=50`` → ``EventStore.list_sessions(limit=50)``;
   - ``GET /v1/sessions/{id}`` → ``EventStore.session_tree``, a different 10-span session
     each time;
   - ``POST /v1/events/export`` → ``EventStore.export``: ``event_type is model`` limit 100,
     the same at page 50, and ``metadata.app.tenant is tenant-N`` limit 100 (a different
     tenant each time, tenant-7 first);

   then extra rows: the session list and an export at deep pages, the older filtered export
   (``metadata.user_id`` + ``event_type`` + 14 days), a run result (``GET /v1/runs/{id}/
   result`` → ``EventStore.run_result_rows`` + :func:`~apiary.dataplane.experiments.results.
   build_result`) and the chart queries (``POST /v1/charts/query`` →
   ``EventStore.chart_data``).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apiary.dataplane.events.schemas_read import ExportRequest  # noqa: E402
from apiary.dataplane.experiments.results import build_result  # noqa: E402
from apiary.store import EVENTS_ARROW_SCHEMA, EmbeddedClickHouse, EventStore  # noqa: E402
from bench._query_data import (  # noqa: E402
    DAY,
    END_MS,
    PROJECT,
    RUN_DATAPOINTS,
    TENANTS,
    USERS,
    Targets,
    load,
    tenant_name,
)

TARGETS_FILE = "bench-query-targets.json"


def measure(name: str, repeat: int, call: Callable[[int], Any]) -> dict[str, Any]:
    """``call(i)`` for i in range(repeat) after a warm-up ``call(-1)``; p50/p95 in ms."""
    call(-1)
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    row = {"name": name, "p50": statistics.median(times), "p95": p95, "n": repeat}
    print(f"  {name:<72} p50 {row['p50']:9.1f} ms   p95 {p95:9.1f} ms", flush=True)
    return row


def run_object(run_id: str, sessions: list[str]) -> dict[str, Any]:
    return {"id": run_id, "run_id": run_id, "status": "completed", "metadata": {},
            "results": {}, "event_ids": sessions, "configuration": {}, "is_active": True,
            "created_at": "2025-06-01T00:00:00Z", "scope_type": "project",
            "scope_id": PROJECT}


def export_query(**body: Any) -> dict[str, Any]:
    """The store query of an export request body, as the route builds it."""
    return ExportRequest.model_validate(body).to_query()


def issue_reads(store: EventStore, targets: Targets, repeat: int) -> list[dict[str, Any]]:
    """The five reads of issue 18's table."""
    rng = random.Random(1)
    sessions = rng.sample(targets.ten_span_sessions,
                          min(len(targets.ten_span_sessions), repeat + 1))
    model = export_query(filters=[{"field": "event_type", "operator": "is", "value": "model",
                                   "type": "string"}], limit=100)
    model_page = {**model, "page": 50}
    tenants = [tenant_name((7 + i) % TENANTS) for i in range(repeat)]

    def session_list(i: int) -> None:
        assert len(store.list_sessions(PROJECT, limit=50)["sessions"]) == 50

    def tree(i: int) -> None:
        node = store.session_tree(PROJECT, sessions[i % len(sessions)])
        assert node["children"]

    def export(query: dict[str, Any]) -> Callable[[int], None]:
        def call(i: int) -> None:
            assert len(store.export(PROJECT, query)["events"]) == 100
        return call

    def tenant(i: int) -> None:
        query = export_query(filters=[{"field": "metadata.app.tenant", "operator": "is",
                                       "value": tenants[max(i, 0)], "type": "string"}],
                             limit=100)
        assert len(store.export(PROJECT, query)["events"]) == 100

    return [
        measure("GET /v1/sessions?limit=50", repeat, session_list),
        measure("GET /v1/sessions/{id} (a 10-span session)", repeat, tree),
        measure("POST /v1/events/export, event_type is model, limit 100", repeat,
                export(model)),
        measure("the same, page 50", repeat, export(model_page)),
        measure("POST /v1/events/export, metadata.app.tenant is tenant-N, limit 100",
                repeat, tenant),
    ]


def extra_reads(store: EventStore, targets: Targets, repeat: int) -> list[dict[str, Any]]:
    """Deeper pages, the older filtered export, a run result and the charts."""
    rng = random.Random(2)
    users = [f"user-{rng.randrange(USERS)}" for _ in range(repeat + 1)]
    runs = sorted(targets.runs)
    week = {"$gte": END_MS - 7 * DAY, "$lte": END_MS}
    month = {"$gte": END_MS - 30 * DAY, "$lte": END_MS}
    deep_page = max(1, min(500, targets.events // 1000))
    deep = export_query(filters=[{"field": "event_type", "operator": "is", "value": "model",
                                  "type": "string"}], limit=100, page=deep_page)
    session_page = max(1, min(1000, targets.events // 1000))

    def sessions_deep(i: int) -> None:
        store.list_sessions(PROJECT, limit=50, page=session_page)

    def export_deep(i: int) -> None:
        store.export(PROJECT, deep)

    def user_export(i: int) -> None:
        store.export(PROJECT, export_query(filters=[
            {"field": "metadata.user_id", "operator": "is", "value": users[i], "type": "string"},
            {"field": "event_type", "operator": "is", "value": "model", "type": "string"}],
            dateRange={"$gte": END_MS - 14 * DAY, "$lte": END_MS}, limit=100))

    def result(i: int) -> None:
        run_id = runs[i % len(runs)]
        rows = store.run_result_rows(PROJECT, run_id, targets.runs[run_id], "average")
        body = build_result(run_object(run_id, targets.runs[run_id]), rows, "average", {})
        assert len(body["datapoints"]) == RUN_DATAPOINTS

    results = [
        measure(f"GET /v1/sessions?limit=50&page={session_page}", repeat, sessions_deep),
        measure(f"export, event_type is model, limit 100, page {deep_page}", repeat,
                export_deep),
        measure("export, metadata.user_id + event_type + 14 d, limit 100", repeat,
                user_export),
    ]
    if runs:
        results.append(measure(f"run result ({RUN_DATAPOINTS} datapoints, 3 metrics)",
                               repeat, result))
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


def add_versions(store: EventStore, count: int, seed: int) -> int:
    """Store a newer version of ``count`` events of the project (a wave of updates: each
    row again, its version + 1), through ``insert_arrow`` as a writer's merged versions
    are: their keys are then stored twice until a merge collapses them. Returns how many
    keys the register marked."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = ", ".join(EVENTS_ARROW_SCHEMA.names)
    table = store.driver.query_arrow(
        f"SELECT {names} FROM apiary.events WHERE project_id = {{p:String}} "
        f"ORDER BY cityHash64(event_id, {int(seed)}) LIMIT {int(count)}", {"p": PROJECT})
    table = table.set_column(table.schema.get_field_index("version"), "version",
                             pc.add(table.column("version"), pa.scalar(1, pa.uint64())))
    table = table.cast(EVENTS_ARROW_SCHEMA)
    for start in range(0, table.num_rows, 5_000):
        store.insert_arrow(table.slice(start, 5_000))
    return len(store.duplicates.marked(PROJECT)) if store.duplicates else 0


def disk_usage(path: Path, driver: EmbeddedClickHouse) -> dict[str, Any]:
    """Bytes on disk of the data directory (``du``) and of the largest table's parts (the
    events, whatever the schema names their table)."""
    du = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=False)
    tables = driver.query_rows(
        "SELECT table, count() AS parts, sum(rows) AS rows, sum(bytes_on_disk) AS bytes, "
        "sum(data_uncompressed_bytes) AS raw FROM system.parts WHERE database = 'apiary' "
        "AND active GROUP BY table ORDER BY bytes DESC LIMIT 1")
    top = tables[0] if tables else {"table": "", "parts": 0, "rows": 0, "bytes": 0, "raw": 0}
    return {"dir_bytes": int(du.stdout.split()[0]) if du.returncode == 0 else None,
            "table": str(top["table"]), "parts": int(top["parts"]), "rows": int(top["rows"]),
            "bytes": int(top["bytes"]), "uncompressed": int(top["raw"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None,
                        help="chDB data directory to use and keep (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the data already in --dir (no load)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--no-extra", action="store_true",
                        help="only the reads of the issue's table")
    parser.add_argument("--versions", type=int, default=0,
                        help="first store a newer version of this many events (an update "
                        "wave: their keys stay stored twice until merged)")
    parser.add_argument("--final", action="store_true",
                        help="collapse versions with FINAL as before issue 18's register "
                        "(default: keep the duplicate register, as the chDB owner does)")
    args = parser.parse_args()
    if args.reuse and args.dir is None:
        parser.error("--reuse needs --dir")
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        path = args.dir or Path(tmp)
        path.mkdir(parents=True, exist_ok=True)
        driver = EmbeddedClickHouse(path, database="apiary")
        store = EventStore(driver)
        report: dict[str, Any] = {"command": " ".join(["bench/query", *sys.argv[1:]])}
        try:
            store.migrate()
            if args.reuse:
                targets = Targets(**json.loads((path / TARGETS_FILE).read_text()))
                print(f"reusing {path}: {targets.events:,} events")
            else:
                if store.count_rows(PROJECT):
                    parser.error(f"{path} already holds data: pass --reuse or a fresh --dir")
                print(f"loading {args.events:,} events into {path}", flush=True)
                t0 = time.perf_counter()
                targets = load(store, args.events, args.seed,
                               lambda line: print(line, flush=True))
                report["load_s"] = time.perf_counter() - t0
                (path / TARGETS_FILE).write_text(json.dumps(asdict(targets)))
            if not args.final:
                t0 = time.perf_counter()
                register = store.track_duplicates(background=False)
                report["register_load_s"] = time.perf_counter() - t0
                print(f"duplicate register: {len(register):,} keys loaded in "
                      f"{report['register_load_s']:.1f} s, "
                      f"{len(register.marked(PROJECT)):,} marked in {PROJECT}", flush=True)
            if args.versions:
                t0 = time.perf_counter()
                marked = add_versions(store, args.versions, args.seed)
                report["versions"] = args.versions
                print(f"stored a newer version of {args.versions:,} events in "
                      f"{time.perf_counter() - t0:.1f} s ({marked:,} keys marked)", flush=True)
            report["events"] = targets.events
            report["disk"] = disk_usage(path, driver)
            disk = report["disk"]
            print(f"on disk: {(disk['dir_bytes'] or 0) / 2**30:.2f} GiB in {path} "
                  f"({disk['table']}: {disk['rows']:,} rows, {disk['bytes'] / 2**30:.2f} GiB "
                  f"compressed, {disk['uncompressed'] / 2**30:.2f} GiB raw, "
                  f"{disk['parts']} parts)")
            print(f"measuring ({args.repeat} runs each, p50/p95 wall time)", flush=True)
            report["reads"] = issue_reads(store, targets, args.repeat)
            if not args.no_extra:
                report["extra"] = extra_reads(store, targets, args.repeat)
            report["export_reads"] = dict(store.export_reads)
            print(f"exports: {store.export_reads['without_final']} without FINAL, "
                  f"{store.export_reads['final']} with FINAL", flush=True)
        finally:
            store.close()
    print("\n| read | p50 | p95 |\n|---|---|---|")
    for row in report["reads"] + report.get("extra", []):
        print(f"| {row['name']} | {row['p50']:,.1f} ms | {row['p95']:,.1f} ms |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
