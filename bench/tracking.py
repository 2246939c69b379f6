"""Benchmark: the writer's CPU per event to derive schema and detail tracking rows.

Run: ``.venv/bin/python -m bench.tracking [--flush 2000] [--passes 7]``

Since migration 0013 a writer derives, per flush, the ``event_schemas`` and
``project_event_details`` rows ClickHouse's views used to compute (``track_fields``:
group the flush's JSON texts with Arrow, parse each distinct one with orjson, walk its
paths). This times it, as process CPU per event (min and median of ``--passes``), on two
workloads cut into flushes of ``--flush`` rows: ``bench/ingest``'s OTLP spans (200
requests of 100 spans, mapped and enriched as a replica does) and ``bench/insert``'s
events (sessions of ~10 events).
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyarrow as pa

from apiary.dataplane.enrich import Enricher, PriceTable
from apiary.dataplane.ingest import otlp
from apiary.event import Event, Tenant
from apiary.store import events_to_arrow, track_fields
from bench._insert_data import TENANT, Generator, Loaded
from bench._workload import RequestFactory


def _flushes(tables: list[pa.Table], rows: int) -> list[pa.Table]:
    whole = pa.concat_tables(tables)
    return [whole.slice(i, rows) for i in range(0, whole.num_rows, rows)]


def otlp_tables(requests: int) -> list[pa.Table]:
    factory = RequestFactory()
    enricher = Enricher(PriceTable.bundled())
    tenant: Tenant = {"org_id": "org", "workspace_id": "ws", "project_id": "project"}
    tables = []
    for _ in range(requests):
        mapped = otlp.map_request(factory.make()[0], "application/x-protobuf")
        enricher.enrich_request(tenant["project_id"], mapped.events)
        tables.append(events_to_arrow(tenant, 1, mapped.events))
    return tables


def insert_tables(events: int) -> list[pa.Table]:
    batch: list[Event] = []
    for generated in Generator(7).all(events, Loaded()):
        batch.extend(generated)
    return [events_to_arrow(TENANT, 1, batch[:events])]


def measure(flushes: list[pa.Table], passes: int) -> tuple[float, float, int]:
    """(min, median) µs of CPU per event over ``passes`` passes, and schema rows made."""
    rows = sum(f.num_rows for f in flushes)
    made = sum(track_fields(f).schemas.num_rows for f in flushes)  # warm-up
    spent = []
    for _ in range(passes):
        start = time.process_time()
        for flush in flushes:
            track_fields(flush)
        spent.append((time.process_time() - start) / rows * 1e6)
    return min(spent), statistics.median(spent), made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flush", type=int, default=2000, help="rows per flush")
    parser.add_argument("--passes", type=int, default=7)
    parser.add_argument("--requests", type=int, default=200, help="OTLP requests")
    parser.add_argument("--events", type=int, default=20_000, help="bench/insert events")
    args = parser.parse_args()
    for name, tables in (("bench/ingest OTLP spans", otlp_tables(args.requests)),
                         ("bench/insert events", insert_tables(args.events))):
        flushes = _flushes(tables, args.flush)
        low, mid, made = measure(flushes, args.passes)
        rows = sum(f.num_rows for f in flushes)
        print(f"{name}: {rows:,} rows in {len(flushes)} flushes of {args.flush}: "
              f"track_fields {low:.2f} us/event min, {mid:.2f} median "
              f"({made / len(flushes):.0f} schema rows a flush)", flush=True)


if __name__ == "__main__":
    main()
