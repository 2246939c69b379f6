"""The writer loop on a real nats-server and the real ClickHouse engine (chDB)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from _writer_loops import until
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
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
    await until(lambda: _drained(js))  # the ack follows the insert (and its ledger entry)
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


async def _drained(js: JetStreamContext) -> bool:
    info = await js.consumer_info("events", "writers")
    return bool(info.num_ack_pending == 0 and info.num_pending == 0)


async def _one_message_published(
    nc: Client, store: EventStore, tmp_path: Path, batch: EventBatch, msg_id: str,
) -> tuple[ApiarySettings, JetStreamContext, DirectStoreClient]:
    """A fresh topology holding ``batch`` as one message; the settings, JetStream and a
    client of ``store`` for the writer."""
    settings = _settings(tmp_path)
    await _fresh_topology(nc, settings)
    js = nc.jetstream()
    await EventPublisher(js, timeout=5, max_message_bytes=nc.max_payload).publish(
        batch, msg_id=msg_id)
    return settings, js, DirectStoreClient(store)


async def test_redelivered_batch_stays_single(
    nc: Client, store: EventStore, project: str, tmp_path: Path
) -> None:
    settings, js, client = await _one_message_published(nc, store, tmp_path,
                                                        _batch(project, 20), "r1")
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


async def _forget_the_consumers_state(js: JetStreamContext, settings: ApiarySettings) -> None:
    """What a nats-server killed (``kill -9``) and restarted can do: the writers' consumer
    is made again from scratch, so messages it had delivered come back as *first*
    deliveries. Another consumer keeps the stream's interest in them meanwhile (interest
    retention), as the restarted server kept the messages themselves."""
    await js.add_consumer("events", ConsumerConfig(durable_name="keeps-interest",
                                                   ack_policy=AckPolicy.EXPLICIT))
    await js.delete_consumer("events", "writers")
    await ensure_topology(js, settings)


class _AckLostWithTheServer(WriterLoop):
    """Stores its first flush, then its acks are lost with a nats-server that, restarted,
    forgot the consumer's delivered state (what ``kill -9`` of nats-server can do, tests/
    faults/test_nats_killed_and_restarted.py): the consumer is made again from scratch, so
    the stored message comes back as a *first* delivery, in a flush composed differently
    (with the next message), hence under another deduplication token."""

    reset: bool = False
    next_batch: EventBatch | None = None

    async def _ack(self, msg: Msg) -> None:
        if self.reset:
            await super()._ack(msg)
            return
        self.reset = True
        await _forget_the_consumers_state(self._js, self._settings)
        assert self.next_batch is not None
        await EventPublisher(self._js, timeout=5, max_message_bytes=1 << 20).publish(
            self.next_batch, msg_id="second")


async def test_redelivery_after_lost_acks_is_not_counted_twice(
    nc: Client, store: EventStore, project: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    await _fresh_topology(nc, settings)
    js = nc.jetstream()
    session = str(uuid.uuid4())
    await EventPublisher(js, timeout=5, max_message_bytes=nc.max_payload).publish(
        _batch(project, 10, session=session), msg_id="first")
    client = DirectStoreClient(store)
    writer = _AckLostWithTheServer(js=js, store=client, objects=LocalObjectStore(tmp_path / "o"),
                                   settings=settings, name="w")
    second = _batch(project, 6, session=session)
    second["events"] = second["events"][1:]  # five more model calls
    writer.next_batch = second
    task = asyncio.create_task(writer.run())
    try:
        await until(lambda: _count(client, project, 15))
        await until(lambda: _drained(js))
    finally:
        writer.stop()
        await task
    assert writer.reset
    # The first message came back with a delivery count of 1, below the highest sequence
    # the writer had received: checked like a redelivery, its 10 events dropped.
    assert writer.stats.redelivered_messages == 0
    assert writer.stats.first_deliveries_checked == 1
    assert writer.stats.duplicates_dropped == 10
    assert store.count_events(project) == 15
    assert store.count_rows(project) == 15  # not one row twice (merges are stopped)
    assert store.count_duplicate_rows(project) == 0
    listed = store.list_sessions(project)["sessions"]
    assert sum(s["event_count"] for s in listed) == 15, listed
    # The session rollups counted each span once.
    assert sum(s["total_tokens"] for s in listed) == 14 * 15, listed


class _RedeliveredWhileItsFlushRuns(WriterLoop):
    """Its first flush stops before its insert until the server, its consumer's delivered
    state lost (what ``kill -9`` of nats-server can do), delivered the same message again as
    a *first* delivery and the writer took it into a second flush: the flake of
    tests/faults/test_nats_killed_and_restarted.py, where 15 events were stored twice and
    the session rollups counted them twice."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.held = False
        enrich = self._flusher.enrichment.enrich

        async def enrich_after_the_redelivery(group: list[Any]) -> None:
            if not self.held:
                self.held = True
                await _forget_the_consumers_state(self._js, self._settings)
                await until(lambda: self._redelivery_in_a_flush())
                await asyncio.sleep(1.0)  # the second flush's check runs now, unfixed
            await enrich(group)

        self._flusher.enrichment.enrich = enrich_after_the_redelivery  # type: ignore[method-assign,assignment]

    async def _redelivery_in_a_flush(self) -> bool:
        return self.stats.first_deliveries_checked >= 1


async def test_a_redelivery_taken_while_its_first_flush_runs_is_not_stored_twice(
    nc: Client, store: EventStore, project: str, tmp_path: Path
) -> None:
    settings, js, client = await _one_message_published(nc, store, tmp_path,
                                                        _batch(project, 10), "only")
    writer = _RedeliveredWhileItsFlushRuns(js=js, store=client,
                                           objects=LocalObjectStore(tmp_path / "o"),
                                           settings=settings, name="w")
    task = asyncio.create_task(writer.run())
    try:
        await until(lambda: _count(client, project, 10))
        await until(lambda: _drained(js))
        await asyncio.sleep(1.5)  # a second insert, unfixed, lands meanwhile
    finally:
        writer.stop()
        await task
    assert writer.held
    assert writer.stats.first_deliveries_checked >= 1
    assert writer.stats.flushes_waited == 1
    assert writer.stats.events_written == 10, writer.stats
    assert writer.stats.duplicates_dropped == 10
    assert store.count_rows(project) == 10  # not one row twice (merges are stopped)
    [session] = store.list_sessions(project)["sessions"]
    assert session["event_count"] == 10
    assert session["total_tokens"] == 9 * 15  # the rollups counted each span once


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
    await until(lambda: _drained(js))
    loop.stop()
    await task
    [key] = await objects.keys("dlq/events/")
    record = orjson.loads(await objects.get(key))
    assert record["error_type"] == "PoisonMessage"
    assert record["headers"]["Nats-Msg-Id"] == "bad"
    assert record["stage"] == "decode"
    assert record["project_id"] == project  # from its subject
    assert record["rows"] == 0
    assert loop.stats.dead_lettered == 1
    info = await js.consumer_info("events", "writers")
    assert info.num_ack_pending == 0
    assert info.num_pending == 0


async def test_a_row_the_store_rejects_is_isolated_and_only_it_dead_lettered(
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
    # The good messages and the poisoned message's two good events are stored; only the
    # event whose id Arrow cannot take is dead-lettered, in a record of its own.
    assert store.count_events(project) == 10
    assert store.count_duplicate_rows(project) == 0
    assert loop.stats.dead_lettered == 1
    assert loop.stats.spans_dead_lettered == 1
    [key] = await objects.keys("dlq/")
    assert key.endswith("-spans.json")
    record = orjson.loads(await objects.get(key))
    assert record["headers"]["Nats-Msg-Id"] == "poisoned"
    assert record["msg_id"] == "poisoned-spans"
    assert record["stage"] == "insert"
    assert (record["project_id"], record["rows"]) == (project, 1)
    [bad] = orjson.loads(base64.b64decode(record["data_base64"]))["events"]
    assert bad["event_id"] == 12345


async def test_flush_mixing_messages_encoded_before_and_after_the_attribute_arrays_stores_both(
    nc: Client, store: EventStore, project: str, tmp_path: Path
) -> None:
    """Across an upgrade to migration 0011 the stream holds Arrow messages without the
    attribute arrays beside new ones; one flush of both must store both (concatenating
    their tables used to fail on the schema)."""
    from apiary.queue import TableBatch
    from apiary.store import _rows, events_to_arrow

    settings = _settings(tmp_path, writer_batch_rows=1000)
    await _fresh_topology(nc, settings)
    js = nc.jetstream()
    publisher = EventPublisher(js, timeout=5, max_message_bytes=nc.max_payload)
    old, new = _batch(project, 4), _batch(project, 3)
    old_table = _rows.events_to_arrow(old["tenant"], old["version"], old["events"])
    new_table = events_to_arrow(new["tenant"], new["version"], new["events"])
    assert "attr_keys" not in old_table.column_names
    assert "attr_keys" in new_table.column_names
    for name, batch, table in (("old", old, old_table), ("new", new, new_table)):
        await publisher.publish_table(
            TableBatch(kind="spans", tenant=batch["tenant"], version=batch["version"],
                       table=table), msg_id=name)
    client = DirectStoreClient(store)
    loop = WriterLoop(js=js, store=client, objects=LocalObjectStore(tmp_path / "o"),
                      settings=settings, name="w")
    task = asyncio.create_task(loop.run())
    await until(lambda: _count(client, project, 7))
    await until(lambda: _drained(js))
    loop.stop()
    await task
    assert loop.stats.dead_lettered == 0
    assert loop.stats.inserts == 1  # one flush held both messages
    found = await client.export(project, {"limit": 100, "filters": [
        {"field": "metadata.tier", "operator": "is", "value": "gold", "type": "string"}]})
    assert {e["event_id"] for e in found["events"]} >= {old["events"][0]["event_id"],
                                                         new["events"][0]["event_id"]}
