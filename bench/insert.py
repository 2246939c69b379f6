"""bench/insert: ClickHouse (chDB) CPU per stored event, by insert size, with and without rollups.

Usage: bench/insert [--events 100000] [--sizes 1000,2500,5000,10000] [--per-view]
                    [--durability] [--seed 7]

What a writer's flush costs the embedded ClickHouse: ``--events`` realistic events
(bench/query's generator: sessions of ~10 events, 0.2 to 0.6 KiB texts) are converted to
Arrow first, then inserted into a fresh, migrated chDB directory in batches of each size,
as a writer does (``EventStore.insert_arrow``), and the process's CPU time is read
(getrusage: chDB's threads included) after the inserts and again once background merges
are idle. Two schemas: the real one (``events`` feeding ``session_aggregates`` through a
materialized view, plus the ``event_schemas`` and ``project_event_details`` rows the writer
derives, migration 0013) and ``events`` alone (view dropped, no tracking rows), so the
figures show what the rollups cost per insert and per row. The tracking rows are derived
before the clock starts, as a writer derives them in its own process
(``apiary.store.track_fields``): that writer-side CPU is printed in its own column. The
real schema's inserts go through the duplicate register as the chDB owner's do (issue 18:
each key hashed and looked up before the insert).
``--per-view`` adds, at the largest size, ``events`` with each rollup on its own.
Inserts carry a deduplication token as a writer's do, on tables that fsync every part
(migration 0009); ``--durability`` adds each size without them (the settings reset, no
token: the schema before issue 13), so the figures show what durable, idempotent inserts
cost.

chDB holds one data directory per process, so each case runs in its own child process.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apiary.event import Event  # noqa: E402
from apiary.store import (  # noqa: E402
    EmbeddedClickHouse,
    EventStore,
    events_to_arrow,
    insert_dedup_token,
    track_fields,
    with_attributes,
)
from bench._insert_data import TENANT, Generator, Loaded  # noqa: E402

#: The rollups: the session view, and the writer-derived schema and detail rows (0013).
VIEWS = ("session_aggregates_mv", "tracking")
#: The tables migration 0009 made durable (and ``events``, ``session_aggregates`` idempotent).
DURABLE_TABLES = ("events", "session_aggregates", "event_schemas", "project_event_details",
                  "event_updates", "derived_traces", "uninherited_sessions")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(events: int, size: int, keep: tuple[str, ...], seed: int,
            durable: bool = True) -> dict[str, float]:
    """One case, in this process, with only the views in ``keep``: CPU per inserted row.
    Not ``durable``: without fsync, deduplication window or token (before issue 13)."""
    with tempfile.TemporaryDirectory(prefix="bench-insert-") as tmp:
        driver = EmbeddedClickHouse(Path(tmp), database="apiary")
        store = EventStore(driver)
        try:
            store.migrate()
            if "tracking" in keep:
                # The real schema is inserted as the chDB owner inserts: observed by the
                # register of keys stored twice (its hashing is in the CPU measured).
                store.track_duplicates(background=False)
            if "session_aggregates_mv" not in keep:
                driver.command("DROP VIEW IF EXISTS apiary.session_aggregates_mv")
            if not durable:
                for name in DURABLE_TABLES:
                    driver.command(f"ALTER TABLE apiary.{name} RESET SETTING "
                                   "fsync_after_insert, fsync_part_directory, "
                                   "non_replicated_deduplication_window")
            batch: list[Event] = []
            tables = []
            for generated in Generator(seed).all(events, Loaded()):
                batch.extend(generated)
                while len(batch) >= size:
                    tables.append(events_to_arrow(TENANT, 1, batch[:size]))
                    batch = batch[size:]
            if batch:
                tables.append(events_to_arrow(TENANT, 1, batch))
            rows = sum(t.num_rows for t in tables)
            walk0 = _cpu()
            tracked = [track_fields(t) for t in tables] if "tracking" in keep else []
            walk = _cpu() - walk0
            cpu0, wall0 = _cpu(), time.perf_counter()
            for i, table in enumerate(tables):
                token = insert_dedup_token([str(i)], table) if durable else None
                if tracked:
                    store.insert_arrow(table, token, tracked[i])
                else:
                    driver.insert_arrow("apiary.events", with_attributes(table),
                                        dedup_token=token)
            cpu1, wall1 = _cpu(), time.perf_counter()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(1.0)
                merging = driver.query_rows(
                    "SELECT count() AS n FROM system.merges WHERE database = 'apiary'")[0]["n"]
                if not merging:
                    break
            cpu2 = _cpu()
            parts = driver.query_rows(
                "SELECT count() AS n FROM system.parts WHERE database = 'apiary' AND "
                "table = 'events' AND active")[0]["n"]
        finally:
            store.close()
    return {"rows": rows, "inserts": len(tables), "insert_us_per_row": 1e6 * (cpu1 - cpu0) / rows,
            "with_merges_us_per_row": 1e6 * (cpu2 - cpu0) / rows,
            "rows_per_s_wall": rows / (wall1 - wall0), "parts": parts,
            "writer_walk_us_per_row": 1e6 * walk / rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--sizes", default="1000,2500,5000,10000",
                        help="rows per insert, comma-separated")
    parser.add_argument("--per-view", action="store_true",
                        help="also measure each view alone, at the largest size")
    parser.add_argument("--durability", action="store_true",
                        help="also measure each size without fsync and deduplication")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--child", nargs=3, metavar=("SIZE", "VIEWS", "DURABLE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        keep = tuple(v for v in args.child[1].split(",") if v in VIEWS)
        print(json.dumps(measure(args.events, int(args.child[0]), keep, args.seed,
                                 durable=args.child[2] == "durable")))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = ("durable", "volatile") if args.durability else ("durable",)
    cases = [(size, views, mode) for size in sizes for views in (",".join(VIEWS), "")
             for mode in modes]
    if args.per_view:
        cases += [(max(sizes), view, "durable") for view in VIEWS]
    print(f"{args.events:,} events per case; CPU of the chDB process per inserted row")
    print(f"{'rows/insert':>11}  {'schema':<36} {'inserts':<9} {'insert':>10} {'+ merges':>10} "
          f"{'rows/s (wall)':>14} {'writer walk':>12}")
    for size, views, mode in cases:
        child = subprocess.run(
            [sys.executable, "-m", "bench.insert", "--events", str(args.events),
             "--seed", str(args.seed), "--child", str(size), views or "-", mode],
            cwd=ROOT, capture_output=True, text=True, check=True)
        result = json.loads(child.stdout.strip().splitlines()[-1])
        schema = ("events + session view + tracking" if views.count(",") == 1
                  else f"events + {views.removesuffix('_mv')}" if views else "events alone")
        print(f"{size:>11,}  {schema:<36} {mode:<9} {result['insert_us_per_row']:>7.1f} µs "
              f"{result['with_merges_us_per_row']:>7.1f} µs "
              f"{result['rows_per_s_wall']:>14,.0f} "
              f"{result['writer_walk_us_per_row']:>9.1f} µs", flush=True)


if __name__ == "__main__":
    main()
