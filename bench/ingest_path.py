"""Benchmark: the CPU an ingestion replica spends per span, stage by stage, in one process.

Run: ``.venv/bin/python -m bench.ingest_path [--seconds 10]``
(``APIARY_FROM_SOURCE=1`` in front to time the sources rather than the compiled modules.)

Replays what ``POST /v1/traces`` does with a body, minus HTTP and JetStream, on
``bench/ingest``'s workload (200 distinct requests of 100 spans): decode and map
(``otlp.map_request``), enrich (``Enricher.enrich_request``), the Arrow rows
(``events_to_arrow``) and the JetStream message (``encode_table``). It prints µs of process
CPU per span for each stage, and which form of the hot path ran (``make compile``).
The first pass over the requests warms caches and imports and is not counted.
"""

from __future__ import annotations

import argparse
import time

import apiary
from apiary.dataplane.enrich import Enricher, PriceTable
from apiary.dataplane.ingest import otlp
from apiary.event import SPANS_KIND, Tenant
from apiary.queue import TableBatch
from apiary.queue._wire import encode_table
from apiary.store import events_to_arrow
from bench._workload import RequestFactory

STAGES = ("decode+map", "enrich", "rows", "message")


def _pass(bodies: list[bytes], enricher: Enricher, tenant: Tenant,
          totals: dict[str, float]) -> int:
    clock = time.process_time
    spans = 0
    for body in bodies:
        a = clock()
        mapped = otlp.map_request(body, "application/x-protobuf")
        b = clock()
        resolved = enricher.enrich_request(tenant["project_id"], mapped.events)
        c = clock()
        table = events_to_arrow(tenant, 1, mapped.events)
        d = clock()
        encode_table(TableBatch(SPANS_KIND, tenant, 1, table, frozenset(resolved)))
        e = clock()
        for stage, spent in zip(STAGES, (b - a, c - b, d - c, e - d), strict=True):
            totals[stage] += spent
        spans += len(mapped.events)
    return spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of timed passes")
    parser.add_argument("--requests", type=int, default=200, help="distinct requests")
    args = parser.parse_args()
    factory = RequestFactory()
    bodies = [factory.make()[0] for _ in range(args.requests)]
    enricher = Enricher(PriceTable.bundled())
    tenant: Tenant = {"org_id": "org", "workspace_id": "ws", "project_id": "project"}
    form = (f"compiled ({len(apiary.COMPILED_MODULES)} modules)" if apiary.COMPILED_MODULES
            else "from source")
    print(f"hot path: {form}; {args.requests} requests x {factory.spans} spans", flush=True)
    _pass(bodies, enricher, tenant, dict.fromkeys(STAGES, 0.0))
    totals = dict.fromkeys(STAGES, 0.0)
    spans = 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        spans += _pass(bodies, enricher, tenant, totals)
        print(f"  {spans:,} spans ...", end="\r", flush=True)
    per_span = {stage: spent / spans * 1e6 for stage, spent in totals.items()}
    print(f"{spans:,} spans: {sum(per_span.values()):.1f} us/span of CPU ("
          + ", ".join(f"{stage} {us:.1f}" for stage, us in per_span.items()) + ")")


if __name__ == "__main__":
    main()
