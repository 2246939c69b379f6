"""Supervision under faults, on real Ray (tests/faults/_ray_pipeline.py): the chDB owner
killed and a writer killed with ``kill -9`` mid-flush, each under a steady OTLP/HTTP stream
into the real data-plane app; the dead-letter store read-only. After each: every span
answered 200 stored exactly once (session rollups included), nothing good dead-lettered,
the accounting exact, the writer running without having died silently."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import pytest
from _ray_pipeline import (
    ACK_WAIT_S,
    RayPipeline,
    assert_accounted,
    assert_kept_exactly_once,
    eventually,
    settled_accounting,
    under_stream,
    wait_for,
)
from _read_only_dirs import read_only
from _report import FaultReport

from apiary.errors import StoreUnavailable
from apiary.queue import events_subject

pytestmark = pytest.mark.ray


def _project() -> str:
    return f"proj-{uuid.uuid4().hex[:12]}"


async def test_owner_actor_killed_mid_stream_loses_and_duplicates_nothing(
        ray_pipeline: RayPipeline, fault_report: FaultReport) -> None:
    import ray

    pipeline = ray_pipeline
    before = pipeline.writer()
    first = ray.get(pipeline.owner().status.remote(), timeout=30)

    async def kill_owner() -> None:
        # A read in flight when the owner dies answers "unavailable" (503), not an error.
        slow_read = asyncio.create_task(pipeline.store().query_rows("SELECT sleep(3) AS s"))
        await asyncio.sleep(0.5)
        ray.kill(pipeline.owner(), no_restart=False)
        with pytest.raises(StoreUnavailable) as refused:
            await slow_read
        assert refused.value.retryable
        assert refused.value.status == 503

    async with pipeline.http_ingest(_project()) as ingest:
        _, ended = await under_stream(pipeline, ingest, kill_owner)
        tally = await pipeline.settle(ingest, wait_s=120)
    # JetStream keeps what ingestion accepts while the store restarts: 200s (or 503s when
    # it cannot), never an error.
    assert set(ingest.statuses()) <= {200, 503}, ingest.statuses()
    assert_kept_exactly_once(ingest, tally, await pipeline.diagnosis())
    restarted = ray.get(pipeline.owner().status.remote(), timeout=30)
    assert restarted["restarted"] is True
    assert restarted["pid"] != first["pid"]  # a new process on the same data directory
    after = pipeline.writer()
    assert after["dead_lettered"] == before["dead_lettered"]
    assert after["loop_restarts"] == before["loop_restarts"]  # waited; never crashed
    assert after["running"] is True
    fault_report.record("2. ClickHouse owner actor killed", tally.accepted, tally.stored,
                        tally.dead_lettered, tally.duplicates, tally.settled_at - ended)


async def test_writer_killed_mid_flush_loses_and_duplicates_nothing(
        ray_pipeline: RayPipeline, fault_report: FaultReport) -> None:
    pipeline = ray_pipeline
    before = pipeline.writer()

    async def kill_writer() -> None:
        os.kill(before["pid"], signal.SIGKILL)

        def restarted() -> bool:  # what `apiary up` does every few seconds
            pipeline.ensure_running()
            stats = pipeline.writer_or_none()
            # {} until the restarted actor has started its loop
            return bool(stats) and stats.get("pid") != before["pid"] and stats["running"]

        await asyncio.to_thread(wait_for, restarted, 60, "Ray restarting the writer", 0.5)

    async with pipeline.http_ingest(_project()) as ingest:
        _, ended = await under_stream(pipeline, ingest, kill_writer)
        # What the killed writer held comes back after ack_wait and is stored once.
        tally = await pipeline.settle(ingest, wait_s=ACK_WAIT_S + 90)
    assert set(ingest.statuses()) <= {200, 503}, ingest.statuses()
    assert_kept_exactly_once(ingest, tally, await pipeline.diagnosis())
    assert pipeline.writer()["dead_lettered"] == 0
    fault_report.record("1. writer kill -9 mid-flush", tally.accepted, tally.stored,
                        tally.dead_lettered, tally.duplicates, tally.settled_at - ended)


async def test_dead_letter_store_read_only_keeps_the_message_in_the_stream(
        ray_pipeline: RayPipeline, fault_report: FaultReport) -> None:
    pipeline, project = ray_pipeline, _project()
    before = pipeline.writer()
    consumer_before = await pipeline.consumer()
    with read_only(pipeline.objects_root):
        await pipeline.publish_raw(events_subject("spans", project), b"not a batch")
        published = await pipeline.publish_steadily(project, batches=10, per_batch=3,
                                                    interval_s=0.02)
        await eventually(
            lambda: _async(pipeline.writer()["dead_letter_failures"]
                           > before["dead_letter_failures"]),
            60, "the dead letter failing")
        failed_at = time.monotonic()
        # Good traffic is stored meanwhile: the writer keeps running.
        store = pipeline.store()

        async def good_stored() -> bool:  # and acknowledged: only the poison is held
            return (await store.count_events(project) == len(published)
                    and (await pipeline.consumer()).num_ack_pending == 1)

        await eventually(good_stored, 60, "the good events stored")
        # Past two ack_waits the poison message is still held by the writer: not
        # redelivered, not terminated, not dead-lettered.
        await asyncio.sleep(max(0.0, 2 * ACK_WAIT_S - (time.monotonic() - failed_at)))
        held = pipeline.writer()
        assert held["dead_letters_pending"] == 1
        assert held["dead_lettered"] == before["dead_lettered"]
        consumer = await pipeline.consumer()
        assert consumer.num_ack_pending == 1
        assert consumer.num_redelivered == consumer_before.num_redelivered
        assert await pipeline.dead_letters() == []
    writable = time.monotonic()

    async def dead_lettered() -> bool:
        return (pipeline.writer()["dead_lettered"] == before["dead_lettered"] + 1
                and await pipeline.drained())

    await eventually(dead_lettered, 60, "the poison message dead-lettered once")
    recovered = time.monotonic()
    keys = await pipeline.dead_letters()
    assert len(keys) == 1, keys  # once, whatever the failed attempts
    after = pipeline.writer()
    assert after["dead_letters_pending"] == 0
    assert after["loop_restarts"] == before["loop_restarts"]
    assert after["running"] is True
    assert await pipeline.store().count_events(project) == len(published)
    duplicates = await pipeline.store().count_duplicate_rows(project)
    assert duplicates == 0
    # Accepted: the good events and the poison message (it decodes to no span: 0 rows,
    # one dead-lettered message).
    counts = await settled_accounting(lambda: pipeline.accounting(project), 30)
    assert_accounted(counts, accepted=len(published), stored=len(published))
    assert counts["dead_lettered"]["messages"] == 1, counts
    fault_report.record("6. dead-letter store read-only", counts["accepted"]["rows"],
                        counts["stored"]["rows"], counts["dead_lettered"]["rows"],
                        duplicates, recovered - writable)


async def _async(value: bool) -> bool:
    return value
