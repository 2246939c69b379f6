"""Store micro-benchmarks (not collected by pytest). Run from the repo root:

    .venv/bin/python tests/store/bench_store.py arrow
    .venv/bin/python tests/store/bench_store.py insert --batches 8 --mvs all
        (--mvs: all | none | sessions | schemas | details)
    .venv/bin/python tests/store/bench_store.py dedup --rows 1000000

``insert`` reports wall rows/s and process CPU µs/row; chDB runs in-process, so process CPU
includes ClickHouse's own work (parsing, MVs, compression), not just Python's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
from factory import many_events, tenant

from apiary.store import EventStore, apply_migrations, events_to_arrow, open_driver
from apiary.store._filters import Params
from apiary.store._queries import deduplicated_events

_MVS = {"sessions": "session_aggregates_mv", "schemas": "event_schemas_mv",
        "details": "project_event_details_mv"}


def bench_arrow(rows: int) -> None:
    events = many_events(rows)
    size = statistics.mean(len(orjson.dumps(e)) for e in events)
    t = tenant()
    events_to_arrow(t, 1, events)
    runs = []
    for _ in range(5):
        c0 = time.process_time()
        events_to_arrow(t, 1, events)
        runs.append(time.process_time() - c0)
    print(f"events_to_arrow: {rows} events of {size:.0f} B (JSON) -> "
          f"{min(runs) / rows * 1e6:.2f} us/row CPU (best of 5), "
          f"median {statistics.median(runs) / rows * 1e6:.2f}")


def bench_insert(batches: int, batch_rows: int, mvs: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        driver = open_driver(url=None, path=Path(tmp), database="apiary")
        apply_migrations(driver)
        keep = set(_MVS) if mvs == "all" else set() if mvs == "none" else {mvs}
        for key, view in _MVS.items():
            if key not in keep:
                driver.command(f"DROP VIEW IF EXISTS apiary.{view}")
        events = many_events(batch_rows * batches)
        tables = [events_to_arrow(tenant(), 1, events[i * batch_rows:(i + 1) * batch_rows])
                  for i in range(batches)]
        driver.insert_arrow("events", tables[0])  # warm-up, not timed
        w0, c0 = time.perf_counter(), time.process_time()
        for table in tables[1:]:
            driver.insert_arrow("events", table)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        n = batch_rows * (batches - 1)
        store = EventStore(driver)
        print(f"insert mvs={mvs}: {n} rows in {batches - 1} batches of {batch_rows}: "
              f"{n / wall:,.0f} rows/s wall, {cpu / n * 1e6:.1f} us/row process CPU; "
              f"stored {store.count_events('proj-a')} events")
        sizes = driver.query_rows(
            "SELECT table, sum(data_compressed_bytes) AS c, sum(data_uncompressed_bytes) AS u "
            "FROM system.parts WHERE database = 'apiary' AND active GROUP BY table "
            "ORDER BY table")
        for row in sizes:
            print(f"  {row['table']}: {row['c'] / 1e6:.1f} MB compressed "
                  f"({row['u'] / max(row['c'], 1):.1f}x)")
        driver.close()


def bench_dedup(rows: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        driver = open_driver(url=None, path=Path(tmp), database="apiary")
        apply_migrations(driver)
        for view in _MVS.values():
            driver.command(f"DROP VIEW IF EXISTS apiary.{view}")
        batch = 50_000
        base = many_events(batch)
        for i in range(rows // batch):
            # Same events under new ids per batch; every 10th batch re-sends batch 0
            # at a higher version so that some keys have two versions to collapse.
            if i % 10 == 9:
                events = base
                version = 2
            else:
                events = [dict(e, event_id=f"{e['event_id']}-{i}",  # type: ignore[misc]
                               session_id=f"{e['session_id']}-{i}") for e in base]
                version = 1
            driver.insert_arrow("events", events_to_arrow(tenant(), version, events))
        store = EventStore(driver)
        parts = driver.query_rows(
            "SELECT count() AS n FROM system.parts WHERE active AND table = 'events'")[0]["n"]
        print(f"rows stored {rows}, distinct events {store.count_events('proj-a')}, "
              f"duplicate rows {store.count_duplicate_rows('proj-a')}, active parts {parts}")
        for method in ("final", "limit_by"):
            store.dedup_method = method
            for label, request in (
                ("export page 1 (1000, filter)", {
                    "filters": [{"field": "event_type", "operator": "is", "value": "model",
                                 "type": "string"}], "limit": 1000}),
                ("export nested filter count", {
                    "filters": [{"field": "metadata.user_id", "operator": "is",
                                 "value": "user-3", "type": "string"}], "limit": 10}),
            ):
                times = []
                for _ in range(repeats):
                    w0 = time.perf_counter()
                    result = store.export("proj-a", request)
                    times.append(time.perf_counter() - w0)
                print(f"  {method:8s} {label}: median {statistics.median(times) * 1000:.0f} ms "
                      f"(total {result['totalEvents']})")
            params = Params()
            source = deduplicated_events("apiary", params, "proj-a", [], ["event_id"], method)
            times = []
            for _ in range(repeats):
                w0 = time.perf_counter()
                driver.query_rows(f"SELECT count() AS n FROM {source}", params.values)
                times.append(time.perf_counter() - w0)
            print(f"  {method:8s} full distinct count: median "
                  f"{statistics.median(times) * 1000:.0f} ms")
        driver.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["arrow", "insert", "dedup"])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-rows", type=int, default=20_000)
    parser.add_argument("--mvs", default="all", choices=["all", "none", *_MVS])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.what == "arrow":
        bench_arrow(args.rows)
    elif args.what == "insert":
        bench_insert(args.batches, args.batch_rows, args.mvs)
    else:
        bench_dedup(args.rows, args.repeats)


if __name__ == "__main__":
    main()
