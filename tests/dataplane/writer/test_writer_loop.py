"""The writer loop on a real nats-server and the real ClickHouse engine (chDB)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from _writer_loops import until
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from apiary.dataplane.writer import WriterLoop
from apiary.event import EventBatch, new_event
from apiary.objects import LocalObjectStore
from apiary.queue import WIRE_SCHEMA, EventPublisher, NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await connect(nats_server.url, name="writer-test")
    yield client
    await client.close()


async def _fresh_topology(nc: Client, settings: ApiarySettings) -> None:
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, settings)


def _settings(tmp_path: Path, **overrides: object) -> ApiarySettings:
    return ApiarySettings(
        data_dir=tmp_path, writer_flush_interval_s=0.1, writer_ack_wait_s=2.0, **overrides
    )


def _batch(project: str, n: int, *, session: str | None = None) -> EventBatch:
    session = session or str(uuid.uuid4())
    trace = uuid.uuid4().hex
    events = [new_event(event_id=session, session_id=session, event_type="session",
                        trace_id=trace, metadata={"tier": "gold"}, start_time=1e12,
                        end_time=1e12 + 5)]
    events += [
        new_event(event_id=str(uuid.uuid4()), trace_id=trace, parent_id=session,
                  event_type="model", config={"model": "gpt-4o-mini"},
                  metadata={"prompt_tokens": 10, "completion_tokens": 5},
                  start_time=1e12 + i, end_time=1e12 + i + 1)
        for i in range(n - 1)
    ]
    return {"schema": WIRE_SCHEMA, "kind": "spans", "version": time.time_ns(),
            "tenant": {"org_id": "o", "workspace_id": "w", "project_id": project},
            "events": events}


class _CrashBeforeAck(WriterLoop):
    """A writer that stores batches and then dies before acknowledging them."""

    async def _ack(self, msg: Msg) -> None:
        return None


async def test_batches_are_stored_enriched_and_acknowledged(
    nc: Client, store: EventStore, project: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    await _fresh_topology(nc, settings)
    js = nc.jetstream()
    batch = _batch(project, 10)
    await EventPublisher(js, timeout=5, max_message_bytes=nc.max_payload).publish(
        batch, msg_id="b1")
    client = DirectStoreClient(store)
    loop = WriterLoop(js=js, store=client, objects=LocalObjectStore(tmp_path / "o"),
                      settings=settings, name="w")
    task = asyncio.create_task(loop.run())
    await until(lambda: _count(client, project, 10))
    loop.stop()
    await task
    events = (await client.export(project, {"limit": 100}))["events"]
    child = next(e for e in events if e["event_type"] == "model")
    assert child["session_id"] == batch["events"][0]["session_id"]
    assert child["metadata"]["tier"] == "gold"  # inherited from the session
    assert child["metadata"]["total_tokens"] == 15
    assert child["metadata"]["cost"] > 0
    assert loop.stats.events_written == 10
    consumer = await js.consumer_info("events", "writers")
    assert consumer.num_ack_pending == 0
    assert consumer.num_pending == 0


async def _count(client: DirectStoreClient, project: str, n: int) -> bool:
    return await client.count_events(project) >= n


async def test_redelivered_batch_stays_single(
    nc: Client, store: EventStore, project: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    await _fresh_topology(nc, settings)
    js = nc.jetstream()
    await EventPublisher(js, timeout=5, max_message_bytes=nc.max_payload).publish(
        _batch(project, 20), msg_id="r1")
    client = DirectStoreClient(store)
    crashing = _CrashBeforeAck(js=js, store=client, objects=LocalObjectStore(tmp_path / "o"),
                               settings=settings, name="crashing")
    task = asyncio.create_task(crashing.run())
    await until(lambda: _count(client, project, 20))
    crashing.stop()
    await task
    assert crashing.stats.events_written == 20

    # JetStream redelivers after ack_wait; a healthy writer recognises the stored events.
    healthy = WriterLoop(js=js, store=client, objects=LocalObjectStore(tmp_path / "o"),
                         settings=settings, name="healthy")
    task = asyncio.create_task(healthy.run())

    async def redelivered_and_acked() -> bool:
        info = await js.consumer_info("events", "writers")
        return healthy.stats.redelivered_messages >= 1 and info.num_ack_pending == 0

    await until(redelivered_and_acked)
    healthy.stop()
    await task
    assert healthy.stats.duplicates_dropped == 20
    assert healthy.stats.events_written == 0
    assert store.count_duplicate_rows(project) == 0
    assert store.count_events(project) == 20
    [session] = store.list_sessions(project)["sessions"]
    assert session["event_count"] == 20
    assert session["total_tokens"] == 19 * 15  # sums not doubled


async def test_undecodable_message_is_dead_lettered_and_the_rest_written(
    nc: Client, store: EventStore, project: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    await _fresh_topology(nc, settings)
    js = nc.jetstream()
    await js.publish(f"events.spans.{project}", b"{not json", headers={"Nats-Msg-Id": "bad"})
    await EventPublisher(js, timeout=5, max_message_bytes=nc.max_payload).publish(
        _batch(project, 5), msg_id="good")
    client = DirectStoreClient(store)
    objects = LocalObjectStore(tmp_path / "objects")
    loop = WriterLoop(js=js, store=client, objects=objects, settings=settings, name="w")
    task = asyncio.create_task(loop.run())
    await until(lambda: _count(client, project, 5))
    loop.stop()
    await task
    [key] = await objects.keys("dlq/events/")
    record = orjson.loads(await objects.get(key))
    assert record["error_type"] == "PoisonMessage"
    assert record["headers"]["Nats-Msg-Id"] == "bad"
    assert loop.stats.dead_lettered == 1
    info = await js.consumer_info("events", "writers")
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_a_row_the_store_rejects_is_isolated_and_dead_lettered(
    nc: Client, store: EventStore, project: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    await _fresh_topology(nc, settings)
    js = nc.jetstream()
    publisher = EventPublisher(js, timeout=5, max_message_bytes=nc.max_payload)
    poisoned = _batch(project, 3)
    poisoned["events"][1]["event_id"] = 12345  # type: ignore[typeddict-item]
    await publisher.publish(_batch(project, 4), msg_id="ok-1")
    await publisher.publish(poisoned, msg_id="poisoned")
    await publisher.publish(_batch(project, 4), msg_id="ok-2")
    client = DirectStoreClient(store)
    objects = LocalObjectStore(tmp_path / "objects2")
    loop = WriterLoop(js=js, store=client, objects=objects, settings=settings, name="w")
    task = asyncio.create_task(loop.run())

    async def settled() -> bool:
        info = await js.consumer_info("events", "writers")
        return loop.stats.messages >= 3 and info.num_ack_pending == 0 and info.num_pending == 0

    await until(settled)
    loop.stop()
    await task
    assert store.count_events(project) == 8
    assert loop.stats.dead_lettered == 1
    [key] = await objects.keys("dlq/")
    assert orjson.loads(await objects.get(key))["headers"]["Nats-Msg-Id"] == "poisoned"
