"""Supervision under faults, on real Ray (tests/faults/_ray_pipeline.py): the chDB owner
killed, a writer killed with ``kill -9`` mid-flush, the dead-letter store read-only. After
each: every published event stored exactly once, nothing good dead-lettered, the writer
running without having died silently."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import pytest
from _ray_pipeline import ACK_WAIT_S, RayPipeline, eventually, wait_for
from _read_only_dirs import read_only

from apiary.errors import StoreUnavailable
from apiary.queue import events_subject

pytestmark = pytest.mark.ray


def _project() -> str:
    return f"proj-{uuid.uuid4().hex[:12]}"


async def _stored_exactly_once(pipeline: RayPipeline, project: str, published: list[str],
                               wait_s: float) -> None:
    """Wait until every published event is stored and the writers hold nothing; then no
    stored row is a duplicate (before any merge) and nothing was dead-lettered."""
    store = pipeline.store()
    expected = len(set(published))
    assert expected == len(published)

    async def all_stored() -> bool:
        try:
            return (await store.count_events(project) == expected
                    and await pipeline.drained())
        except StoreUnavailable:
            return False

    await eventually(all_stored, wait_s, f"{expected} events stored and the stream drained")
    assert await store.count_rows(project) == expected  # one row each: no duplicate
    assert await store.count_duplicate_rows(project) == 0
    assert await pipeline.dead_letters() == []


async def test_owner_actor_killed_mid_stream_loses_and_duplicates_nothing(
        ray_pipeline: RayPipeline) -> None:
    import ray

    pipeline, project = ray_pipeline, _project()
    before = pipeline.writer()
    owner = pipeline.owner()
    first = ray.get(owner.status.remote(), timeout=30)
    traffic = asyncio.create_task(pipeline.publish_steadily(
        project, batches=60, per_batch=5, interval_s=0.05))
    await eventually(lambda: _async(pipeline.writer()["inserts"] > before["inserts"]), 60,
                     "the writer storing the stream")
    # A read in flight when the owner dies answers "unavailable" (503), not an error.
    slow_read = asyncio.create_task(pipeline.store().query_rows("SELECT sleep(3) AS s"))
    await asyncio.sleep(0.5)
    ray.kill(owner, no_restart=False)
    with pytest.raises(StoreUnavailable) as refused:
        await slow_read
    assert refused.value.retryable
    assert refused.value.status == 503

    published = await traffic
    await _stored_exactly_once(pipeline, project, published, wait_s=120)
    restarted = ray.get(pipeline.owner().status.remote(), timeout=30)
    assert restarted["restarted"] is True
    assert restarted["pid"] != first["pid"]  # a new process on the same data directory
    after = pipeline.writer()
    assert after["dead_lettered"] == before["dead_lettered"]
    assert after["loop_restarts"] == before["loop_restarts"]  # waited; never crashed
    assert after["running"] is True


async def test_writer_killed_mid_flush_loses_and_duplicates_nothing(
        ray_pipeline: RayPipeline) -> None:
    pipeline, project = ray_pipeline, _project()
    before = pipeline.writer()
    traffic = asyncio.create_task(pipeline.publish_steadily(
        project, batches=60, per_batch=5, interval_s=0.05))
    await eventually(lambda: _async(pipeline.writer()["inserts"] > before["inserts"]), 60,
                     "the writer storing the stream")
    os.kill(before["pid"], signal.SIGKILL)
    published = await traffic

    def restarted() -> bool:  # what `apiary up` does every few seconds
        pipeline.ensure_running()
        stats = pipeline.writer_or_none()
        return stats is not None and stats["pid"] != before["pid"] and stats["running"]

    await asyncio.to_thread(wait_for, restarted, 60, "Ray restarting the writer", 0.5)
    # What the killed writer held comes back after ack_wait and is stored once.
    await _stored_exactly_once(pipeline, project, published, wait_s=ACK_WAIT_S + 90)
    assert pipeline.writer()["dead_lettered"] == 0


async def test_dead_letter_store_read_only_keeps_the_message_in_the_stream(
        ray_pipeline: RayPipeline) -> None:
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

    async def dead_lettered() -> bool:
        return (pipeline.writer()["dead_lettered"] == before["dead_lettered"] + 1
                and await pipeline.drained())

    await eventually(dead_lettered, 60, "the poison message dead-lettered once")
    keys = await pipeline.dead_letters()
    assert len(keys) == 1, keys  # once, whatever the failed attempts
    after = pipeline.writer()
    assert after["dead_letters_pending"] == 0
    assert after["loop_restarts"] == before["loop_restarts"]
    assert after["running"] is True
    assert await pipeline.store().count_events(project) == len(published)


async def _async(value: bool) -> bool:
    return value
