"""Exact ingest accounting (apiary/dataplane/accounting/stats.py) on a real nats-server, the
session's chDB and the production writer loop: before a writer runs everything accepted is
in flight, after it drained everything is stored or dead-lettered, and at every moment
accepted = stored + dead-lettered + in flight with nothing accepted missing."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from _dataplane import until
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from apiary.dataplane.accounting import ProjectStats, Retained, ingest_stats, tally
from apiary.dataplane.writer import WriterLoop
from apiary.event import EventBatch, Tenant, new_event
from apiary.objects import LocalObjectStore
from apiary.queue import (
    ROWS_HEADER,
    WIRE_SCHEMA,
    EventPublisher,
    NatsServer,
    TableBatch,
    connect,
    ensure_topology,
)
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore, events_to_arrow


@pytest.fixture
async def nc(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Client]:
    client = await connect(nats_server.url, name="accounting-test")
    js = client.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, _settings(tmp_path))
    yield client
    await client.close()


def _settings(tmp_path: Path) -> ApiarySettings:
    return ApiarySettings(data_dir=tmp_path, writer_flush_interval_s=0.05,
                          writer_ack_wait_s=2.0)


def _tenant(project: str) -> Tenant:
    return {"org_id": "o", "workspace_id": "w", "project_id": project}


def _api_batch(project: str, n: int) -> EventBatch:
    return {"schema": WIRE_SCHEMA, "kind": "api", "tenant": _tenant(project),
            "version": time.time_ns(),
            "events": [new_event(event_id=str(uuid.uuid4())) for _ in range(n)]}


def _spans(project: str, n: int) -> TableBatch:
    version = time.time_ns()
    events = [new_event(event_id=str(uuid.uuid4()), event_type="model") for _ in range(n)]
    return TableBatch("spans", _tenant(project), version,
                      events_to_arrow(_tenant(project), version, events))


@contextlib.asynccontextmanager
async def _writer(js: JetStreamContext, store: EventStore, tmp_path: Path
                  ) -> AsyncIterator[WriterLoop]:
    loop = WriterLoop(js=js, store=DirectStoreClient(store), settings=_settings(tmp_path),
                      objects=LocalObjectStore(tmp_path / "objects"), name="accounting")
    task = asyncio.create_task(loop.run())
    try:
        yield loop
    finally:
        loop.stop()
        await task


async def _drained(js: JetStreamContext) -> bool:
    info = await js.consumer_info("events", "writers")
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


def _counts(stats: ProjectStats) -> dict[str, tuple[int, int]]:
    """``{state: (messages, rows)}`` of a project's totals."""
    return {state: (c["messages"], c["rows"]) for state, c in stats.total.as_dict().items()}


def _consistent(stats: ProjectStats) -> None:
    """accepted = stored + dead-lettered + in flight, in total and by kind."""
    for part in [stats.total, *stats.by_kind.values()]:
        states = (part.stored, part.dead_lettered, part.in_flight)
        assert part.accepted.messages == sum(s.messages for s in states)
        assert part.accepted.rows == sum(s.rows for s in states)


async def test_before_a_writer_runs_everything_is_in_flight_then_all_is_stored(
        nc: Client, store: EventStore, project: str, tmp_path: Path) -> None:
    js = nc.jetstream()
    publisher = EventPublisher(js, timeout=5, max_message_bytes=nc.max_payload)
    client = DirectStoreClient(store)
    await publisher.publish_table(_spans(project, 7), msg_id=uuid.uuid4().hex)
    await publisher.publish(_api_batch(project, 3), msg_id=uuid.uuid4().hex)
    # Published before messages said how many rows they hold: decoded to count them.
    legacy = _api_batch(project, 2)
    await js.publish(f"events.api.{project}", orjson.dumps(legacy),
                     headers={"Nats-Msg-Id": uuid.uuid4().hex})
    # An update (PUT /events) of one of them: a patch is a row of its message.
    patch: EventBatch = {**_api_batch(project, 0), "kind": "updates", "patches": [
        {"event_id": legacy["events"][0]["event_id"], "version": time.time_ns(),
         "feedback": {"rating": 5}}]}  # type: ignore[typeddict-item]
    await publisher.publish(patch, msg_id=uuid.uuid4().hex)
    # Another project's message is not this project's.
    await publisher.publish(_api_batch(project + "-other", 4), msg_id=uuid.uuid4().hex)

    before = (await ingest_stats(js, client, project))[project]
    assert _counts(before) == {"accepted": (4, 13), "stored": (0, 0),
                               "dead_lettered": (0, 0), "in_flight": (4, 13)}
    assert before.by_kind["spans"].in_flight.rows == 7
    assert before.by_kind["api"].in_flight.as_dict() == {"messages": 2, "rows": 5}
    assert before.by_kind["updates"].in_flight.as_dict() == {"messages": 1, "rows": 1}

    async with _writer(js, store, tmp_path):
        await until(lambda: _drained(js), 30)
    after = (await ingest_stats(js, client, project))[project]
    assert _counts(after) == {"accepted": (4, 13), "stored": (4, 13),
                              "dead_lettered": (0, 0), "in_flight": (0, 0)}
    assert after.by_kind["spans"].stored.rows == 7
    assert after.by_kind["updates"].stored.rows == 1
    assert store.count_events(project) == 12
    everyone = await ingest_stats(js, client, None)
    assert everyone[project + "-other"].total.stored.rows == 4
    assert _counts(everyone[project]) == _counts(after)


async def test_a_dead_lettered_message_counts_as_dead_lettered(
        nc: Client, store: EventStore, project: str, tmp_path: Path) -> None:
    js = nc.jetstream()
    publisher = EventPublisher(js, timeout=5, max_message_bytes=nc.max_payload)
    client = DirectStoreClient(store)
    await publisher.publish(_api_batch(project, 4), msg_id=uuid.uuid4().hex)
    # Two poison messages straight to JetStream: one that says it holds 5 rows (as a
    # replica's message whose bytes were damaged would), one that says nothing.
    await js.publish(f"events.spans.{project}", b"\x00 not a batch",
                     headers={"Nats-Msg-Id": uuid.uuid4().hex, ROWS_HEADER: "5"})
    await js.publish(f"events.api.{project}", b"{not json",
                     headers={"Nats-Msg-Id": uuid.uuid4().hex})
    before = (await ingest_stats(js, client, project))[project]
    assert _counts(before)["in_flight"] == (3, 9)

    async with _writer(js, store, tmp_path):
        await until(lambda: _drained(js), 30)
    after = (await ingest_stats(js, client, project))[project]
    assert _counts(after) == {"accepted": (3, 9), "stored": (1, 4),
                              "dead_lettered": (2, 5), "in_flight": (0, 0)}
    assert after.by_kind["spans"].dead_lettered.as_dict() == {"messages": 1, "rows": 5}
    assert after.by_kind["api"].dead_lettered.as_dict() == {"messages": 1, "rows": 0}
    _consistent(after)


async def test_accepted_is_exact_at_every_poll_while_the_writer_runs(
        nc: Client, store: EventStore, project: str, tmp_path: Path) -> None:
    """Publishing and writing go on while the stats are polled: every poll balances, and
    counts at least everything acknowledged before it began (nothing in between the stream
    and the ledger goes missing); once drained, accepted = published = stored."""
    js = nc.jetstream()
    publisher = EventPublisher(js, timeout=5, max_message_bytes=nc.max_payload)
    client = DirectStoreClient(store)
    published = messages = 0
    done = asyncio.Event()
    polls: list[ProjectStats] = []

    def seen_enough() -> bool:  # the polls saw the writer at work, several times
        return (len(polls) >= 5 and any(p.total.in_flight.rows for p in polls)
                and any(p.total.stored.rows for p in polls))

    async def publish() -> None:
        nonlocal published, messages
        for i in range(3_000):  # until the polls saw enough (bounded)
            n = 1 + i % 7
            if i % 2:
                await publisher.publish_table(_spans(project, n), msg_id=uuid.uuid4().hex)
            else:
                await publisher.publish(_api_batch(project, n), msg_id=uuid.uuid4().hex)
            published += n
            messages += 1
            if i >= 60 and seen_enough():
                break
            await asyncio.sleep(0.005)
        done.set()

    async with _writer(js, store, tmp_path):
        producer = asyncio.create_task(publish())
        while not done.is_set():
            acknowledged = published
            stats = (await ingest_stats(js, client, project))[project]
            _consistent(stats)
            assert stats.total.accepted.rows >= acknowledged
            polls.append(stats)
        await producer
        await until(lambda: _drained(js), 30)
    assert seen_enough()
    final = (await ingest_stats(js, client, project))[project]
    assert _counts(final)["accepted"] == (messages, published)
    assert _counts(final)["stored"] == (messages, published)
    assert store.count_events(project) == published


def test_a_message_in_the_stream_and_in_the_ledger_counts_once() -> None:
    """Settled but not yet acknowledged: in both, counted as settled (the ledger wins)."""
    retained = [Retained(4, "p", "spans", 10), Retained(5, "p", "spans", 3)]
    ledger = [
        {"project_id": "p", "kind": "spans", "dead": False, "sequence": 0, "messages": 2,
         "stored_rows": 20, "dead_rows": 0},
        {"project_id": "p", "kind": "spans", "dead": True, "sequence": 4, "messages": 1,
         "stored_rows": 9, "dead_rows": 1},
    ]
    stats = tally(retained, ledger)["p"]
    assert _counts(stats) == {"accepted": (4, 33), "stored": (2, 29),
                              "dead_lettered": (1, 1), "in_flight": (1, 3)}
