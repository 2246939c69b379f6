"""Fault 5: the warehouse unavailable for 60 s under a steady OTLP/HTTP stream
(tests/faults/_ray_pipeline.py).

The fault: the chDB owner actor's process (the one process holding the embedded
ClickHouse) is frozen with SIGSTOP for 60 s, then resumed with SIGCONT. Every store call
of the writers then hangs (no error, no answer: the hardest case for a caller, unlike the
owner's death in fault 2, which Ray answers at once) and is only answered once the process
runs again; a call with a deadline sees a timeout. Nothing is mocked and nothing is
restarted: the same engine resumes on the same data.

Ingestion keeps answering 200 throughout (JetStream, not the warehouse, is what a 200
promises: the spans are fsync'ed in the stream) and never 500. The writers keep what they
hold alive (``in_progress``) rather than letting JetStream redeliver it or burning its
deliveries; after the fault every span answered 200 is stored exactly once, nothing is
dead-lettered, and the session rollups equal the sums over ``FINAL``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from _ray_pipeline import RayPipeline, assert_kept_exactly_once, eventually, under_stream
from _report import FaultReport

pytestmark = pytest.mark.ray

UNAVAILABLE_S = 60.0


def _stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (state ``T`` in ``/proc``)."""
    states = [(task / "stat").read_text().rsplit(")", 1)[1].split()[0]
              for task in Path(f"/proc/{pid}/task").iterdir()]
    return bool(states) and all(state == "T" for state in states)


async def test_warehouse_unavailable_for_60_s_keeps_every_span_once(
        ray_pipeline: RayPipeline, fault_report: FaultReport) -> None:
    import ray

    pipeline = ray_pipeline
    before = pipeline.writer()
    owner = pipeline.owner()
    status = await asyncio.to_thread(ray.get, owner.status.remote(), timeout=30)
    pid = int(status["pid"])
    frozen: list[float] = []  # wall clock: every owner thread stopped, and resumed

    async def freeze_the_owner() -> None:
        os.kill(pid, signal.SIGSTOP)
        try:
            await eventually(lambda: asyncio.to_thread(_stopped, pid), 10,
                             "every thread of the owner stopped", every_s=0.01)
            frozen.append(time.time())
            await asyncio.sleep(UNAVAILABLE_S)  # the fault itself: the warehouse frozen
        finally:
            frozen.append(time.time())
            os.kill(pid, signal.SIGCONT)

    async with pipeline.http_ingest(f"proj-{uuid.uuid4().hex[:12]}") as ingest:
        began, ended = await under_stream(pipeline, ingest, freeze_the_owner, workers=2,
                                          interval_s=0.1)
        tally = await pipeline.settle(ingest, wait_s=150)

    # The fault was real: ClickHouse stamps ``inserted_at`` when it commits a row, and no
    # row of the stream was committed between the moment every thread of its process was
    # stopped and the SIGCONT (an insert answered just before the freeze but counted by
    # the writer after it does not blur this, as a writer-side count would).
    stopped_at, resumed_at = frozen
    db = pipeline.settings.clickhouse_database
    [window] = await pipeline.store().query_rows(
        f"SELECT countIf(inserted_at > fromUnixTimestamp64Milli({{a:Int64}})"
        f" AND inserted_at < fromUnixTimestamp64Milli({{b:Int64}})) AS during,"
        f" countIf(inserted_at >= fromUnixTimestamp64Milli({{b:Int64}})) AS after,"
        f" countIf(inserted_at <= fromUnixTimestamp64Milli({{a:Int64}})) AS before"
        f" FROM `{db}`.events WHERE project_id = {{p:String}}",
        {"a": int(stopped_at * 1000) + 1, "b": int(resumed_at * 1000), "p": ingest.project})
    assert resumed_at - stopped_at >= UNAVAILABLE_S
    assert window["during"] == 0, window
    assert window["before"] > 0, window
    assert window["after"] > 0, window
    # JetStream kept taking spans: every request answered 200, before, during and after.
    assert ingest.statuses().keys() == {200}, ingest.statuses()
    assert sum(1 for a in ingest.answers if began <= a.sent_at <= ended) > 100
    after = pipeline.writer()
    assert_kept_exactly_once(ingest, tally, await pipeline.diagnosis())
    assert after["dead_lettered"] == before["dead_lettered"]
    assert after["running"] is True
    # The same owner process resumed: the warehouse was unavailable, not restarted.
    status = await asyncio.to_thread(ray.get, pipeline.owner().status.remote(), timeout=30)
    assert status["pid"] == pid
    fault_report.record("5. warehouse unavailable 60 s", tally.accepted, tally.stored,
                        tally.dead_lettered, tally.duplicates, tally.settled_at - ended)
