"""A poison message is dead-lettered, its cause fixed, and it is replayed twice, and again
after JetStream forgot its id: stored once, with exact session rollups, beside good traffic.

Real components throughout: a nats-server, the chDB engine (a database of this test's own,
merges stopped so that a duplicate row would stay visible), the production writer loop, the
local object store, and :class:`~apiary.queue.dead_letters.DeadLetters` as ``apiary dlq
replay`` and the admin API use it. The poison is real too: a ClickHouse constraint on the
``events`` table refuses one session's rows (as a schema the data does not fit would), so the
store rejects that batch, the writer isolates it and dead-letters it; "fixed" is dropping the
constraint.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from apiary.dataplane.writer import WriterLoop
from apiary.errors import Conflict
from apiary.event import Event, EventBatch, new_event
from apiary.objects import LocalObjectStore
from apiary.queue import WIRE_SCHEMA, EventPublisher, NatsServer, connect, ensure_topology
from apiary.queue.dead_letters import DeadLetters
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EmbeddedClickHouse, EventStore, apply_migrations

WINDOW_S = 3.0  # JetStream's duplicate window here, so the test can outlast it
EVENTS = 12  # per session: a session event and its model calls
GOOD_SESSIONS = 6
COST = 0.25
TOKENS = 40


@pytest.fixture
def database(driver: EmbeddedClickHouse) -> Iterator[str]:
    name = f"f_{uuid.uuid4().hex[:10]}"
    apply_migrations(driver, name)
    driver.command(f"SYSTEM STOP MERGES `{name}`.events")
    driver.command(f"SYSTEM STOP MERGES `{name}`.session_aggregates")
    yield name
    driver.command(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
async def js(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    nc: Client = await connect(nats_server.url, name="fault-dead-letter-replay")
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, ApiarySettings(data_dir=tmp_path, duplicate_window_s=WINDOW_S))
    yield js
    await nc.close()


def _session(project: str) -> tuple[str, EventBatch]:
    sid = str(uuid.uuid4())
    events: list[Event] = [new_event(event_id=sid, session_id=sid, event_type="session",
                                     start_time=1.7e12, end_time=1.7e12 + 50)]
    events += [
        new_event(event_id=str(uuid.uuid4()), session_id=sid, parent_id=sid,
                  event_type="model", start_time=1.7e12 + i, end_time=1.7e12 + i + 1,
                  metadata={"cost": COST, "prompt_tokens": TOKENS - 10,
                            "completion_tokens": 10, "total_tokens": TOKENS})
        for i in range(EVENTS - 1)
    ]
    return sid, {"schema": WIRE_SCHEMA, "kind": "spans", "version": time.time_ns(),
                 "tenant": {"org_id": "o", "workspace_id": "w", "project_id": project},
                 "events": events}


async def _until(predicate: Callable[[], Awaitable[bool]], what: str,
                 wait_s: float = 30.0) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not reached within {wait_s} s")


async def test_a_fixed_poison_message_replayed_twice_is_stored_once_with_exact_rollups(
        js: JetStreamContext, driver: EmbeddedClickHouse, database: str,
        tmp_path: Path) -> None:
    settings = ApiarySettings(data_dir=tmp_path, clickhouse_database=database,
                              writer_flush_interval_s=0.05, writer_ack_wait_s=5.0,
                              duplicate_window_s=WINDOW_S)
    store = EventStore(driver, database=database)
    project = f"p-{uuid.uuid4().hex[:8]}"
    poison_sid, poison = _session(project)
    # The fault: the store refuses every row of the poison session.
    driver.command(f"ALTER TABLE `{database}`.events ADD CONSTRAINT refuse_poison "
                   f"CHECK session_id != '{poison_sid}'")

    objects = LocalObjectStore(tmp_path / "objects")
    writer = WriterLoop(js=js, store=DirectStoreClient(store), settings=settings,
                        objects=objects, name="w-replay")
    task = asyncio.create_task(writer.run())
    publisher = EventPublisher(js, timeout=5, max_message_bytes=js._nc.max_payload)
    dead = DeadLetters(objects, js)

    async def drained() -> bool:
        info = await js.consumer_info("events", "writers")
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)

    try:
        # Good traffic around the poison batch: accepted = good + poison.
        good = [_session(project)[1] for _ in range(GOOD_SESSIONS)]
        for batch in good[:3]:
            await publisher.publish(batch, msg_id=uuid.uuid4().hex)
        await publisher.publish(poison, msg_id="poison-request-1")
        for batch in good[3:]:
            await publisher.publish(batch, msg_id=uuid.uuid4().hex)

        async def poison_dead_lettered() -> bool:
            return await drained() and len(await dead.select()) == 1

        await _until(poison_dead_lettered, "the poison batch dead-lettered, the rest written")
        assert store.count_events(project) == GOOD_SESSIONS * EVENTS  # no good message lost
        [letter] = await dead.select()
        assert (letter.reason, letter.stage, letter.msg_id) == (
            "StoreRejected", "insert", "poison-request-1")
        assert writer.stats.dead_lettered == 1
        record = await objects.get(letter.key)

        # Fixed. The first replay comes while JetStream still remembers the original's id:
        # refused, kept; then accepted once the window has passed.
        driver.command(f"ALTER TABLE `{database}`.events DROP CONSTRAINT refuse_poison")
        with pytest.raises(Conflict):
            await dead.replay(letter)

        async def replayed_once() -> bool:
            try:
                return await dead.replay(await dead.get(letter.id))
            except Conflict:
                return False

        await _until(replayed_once, "a replay JetStream accepts", wait_s=WINDOW_S + 20)
        # Replayed twice: the operator (or a retry after a crash before the record was
        # removed) replays the same record again. JetStream drops the copy.
        await objects.put(letter.key, record)
        report = await dead.replay_all(await dead.select())
        assert report.already_replayed == [letter.id]
        assert report.replayed == []
        await _until(drained, "the replay written")
        assert await dead.select() == []

        # Once more after JetStream forgot the id: a second message reaches the writer,
        # which recognises its events as stored. (Until the window has passed, each replay
        # is a duplicate of the first one, and removes the record: put it back and retry.)
        async def published_again() -> bool:
            await objects.put(letter.key, record)
            return await dead.replay(await dead.get(letter.id))

        await _until(published_again, "a replay after the duplicate window",
                     wait_s=WINDOW_S + 20)

        async def second_copy_recognised() -> bool:
            return await drained() and writer.stats.duplicates_dropped >= EVENTS

        await _until(second_copy_recognised, "the second copy recognised as stored")
    finally:
        writer.stop()
        await asyncio.wait_for(task, 30)
        with contextlib.suppress(Exception):
            driver.command(f"ALTER TABLE `{database}`.events DROP CONSTRAINT refuse_poison")

    accepted = (GOOD_SESSIONS + 1) * EVENTS
    assert store.count_events(project) == accepted  # stored == accepted, dead letters 0
    assert store.count_rows(project) == accepted  # not one row twice (merges are stopped)
    assert store.count_duplicate_rows(project) == 0
    assert await dead.select() == []
    # The poison session's rollup counted it once, and equals the sums over FINAL.
    rollup = driver.query_rows(
        f"SELECT sum(cost) AS cost, sum(total_tokens) AS tokens "
        f"FROM `{database}`.session_aggregates "
        "WHERE project_id = {p:String} AND session_id = {s:String}",
        {"p": project, "s": poison_sid})[0]
    final = driver.query_rows(
        f"SELECT sum(cost) AS cost, sum(total_tokens) AS tokens FROM `{database}`.events FINAL "
        "WHERE project_id = {p:String} AND session_id = {s:String} "
        "AND event_type != 'session'", {"p": project, "s": poison_sid})[0]
    assert float(rollup["cost"]) == pytest.approx(float(final["cost"]))
    assert float(rollup["cost"]) == pytest.approx((EVENTS - 1) * COST)
    assert int(rollup["tokens"]) == int(final["tokens"]) == (EVENTS - 1) * TOKENS
    sessions = {s["session_id"]: s for s in store.list_sessions(project)["sessions"]}
    assert sessions[poison_sid]["event_count"] == EVENTS
    assert sessions[poison_sid]["cost"] == pytest.approx((EVENTS - 1) * COST)
