"""Fault 8: an ambiguous insert (the call times out after ClickHouse committed the data).

The writer cannot know the data is stored, so it retries the same block. Before issue 13 the
retry stored every event a second time and the session rollups summed their cost and tokens
twice. Now each insert carries a deduplication token (its messages' ids and rows) that
the ``events`` table and its rollups honour (migration 0009): the retry stores nothing.
The schema rollup the writer derives (migration 0013) is inserted after the events, with a
token of its own: whether the events insert or the ``event_schemas`` insert is the
ambiguous one, each field path is counted once per event.

The ambiguity is real: the wrapping driver performs the insert on the real chDB engine and
only then raises the retryable error a timed-out call raises; the writer loop, its retry
path and the deduplication are the production ones, over a real nats-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from _ray_pipeline import assert_accounted
from _report import FaultReport
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from apiary.dataplane.accounting import ingest_stats
from apiary.dataplane.writer import WriterLoop
from apiary.errors import StoreUnavailable
from apiary.event import Event, EventBatch, new_event
from apiary.objects import LocalObjectStore
from apiary.queue import WIRE_SCHEMA, EventPublisher, NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EmbeddedClickHouse, EventStore, apply_migrations

EVENTS = 40
COST = 0.125
TOKENS = 30


class CommitsThenTimesOut:
    """A ClickHouse driver whose first insert into ``table`` commits, then fails as a
    timeout."""

    def __init__(self, inner: EmbeddedClickHouse, database: str, table: str = "events") -> None:
        self.inner = inner
        self.database = database
        self.table = table
        self.ambiguous: list[str | None] = []  # the token of each insert answered with an error

    def insert_arrow(self, table: str, data: pa.Table, *,
                     dedup_token: str | None = None) -> None:
        self.inner.insert_arrow(table, data, dedup_token=dedup_token)
        if table.endswith(f".{self.table}") and not self.ambiguous:
            self.ambiguous.append(dedup_token)
            raise StoreUnavailable("timed out waiting for ClickHouse to answer the insert",
                                   code=159, name="TIMEOUT_EXCEEDED", table=table)

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        self.inner.command(sql, parameters)

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        return self.inner.query_arrow(sql, parameters)

    def query_rows(self, sql: str,
                   parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.inner.query_rows(sql, parameters)

    def close(self) -> None:
        return None


@pytest.fixture
def database(driver: EmbeddedClickHouse) -> Iterator[str]:
    name = f"f_{uuid.uuid4().hex[:10]}"
    apply_migrations(driver, name)
    # Merges would collapse duplicate rows behind the test's back: keep every row visible.
    driver.command(f"SYSTEM STOP MERGES `{name}`.events")
    driver.command(f"SYSTEM STOP MERGES `{name}`.session_aggregates")
    yield name
    driver.command(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await connect(nats_server.url, name="fault-ambiguous-insert")
    yield client
    await client.close()


def _session(project: str) -> tuple[str, list[Event]]:
    sid = str(uuid.uuid4())
    events = [new_event(event_id=sid, session_id=sid, event_type="session",
                        start_time=1.7e12, end_time=1.7e12 + 50)]
    events += [
        new_event(event_id=str(uuid.uuid4()), session_id=sid, parent_id=sid,
                  event_type="model", start_time=1.7e12 + i, end_time=1.7e12 + i + 1,
                  metadata={"cost": COST, "prompt_tokens": TOKENS - 10,
                            "completion_tokens": 10, "total_tokens": TOKENS})
        for i in range(EVENTS - 1)
    ]
    return sid, events


async def _until(predicate: Callable[[], Any], wait_s: float = 30.0) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.mark.parametrize("ambiguous_table", ["events", "event_schemas"])
async def test_ambiguous_insert_is_retried_and_stored_once_with_exact_aggregates(
        nc: Client, driver: EmbeddedClickHouse, database: str, tmp_path: Path,
        fault_report: FaultReport, ambiguous_table: str) -> None:
    settings = ApiarySettings(data_dir=tmp_path, clickhouse_database=database,
                              writer_flush_interval_s=0.05, writer_ack_wait_s=2.0)
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, settings)
    faulty = CommitsThenTimesOut(driver, database, ambiguous_table)
    store = EventStore(faulty, database=database)
    project = f"p-{uuid.uuid4().hex[:8]}"
    sid, events = _session(project)
    batch: EventBatch = {"schema": WIRE_SCHEMA, "kind": "spans", "version": time.time_ns(),
                         "tenant": {"org_id": "o", "workspace_id": "w", "project_id": project},
                         "events": events}
    publisher = EventPublisher(js, timeout=5, max_message_bytes=nc.max_payload)
    await publisher.publish(batch, msg_id=uuid.uuid4().hex)  # accepted: EVENTS events

    writer = WriterLoop(js=js, store=DirectStoreClient(store), settings=settings,
                        objects=LocalObjectStore(tmp_path / "objects"), name="w-ambiguous")
    task = asyncio.create_task(writer.run())
    try:
        async def drained() -> bool:
            info = await js.consumer_info("events", "writers")
            return bool(info.num_pending == 0 and info.num_ack_pending == 0)

        await _until(drained)
    finally:
        writer.stop()
        await asyncio.wait_for(task, 30)

    # The fault happened: the first insert committed and its caller saw a timeout.
    assert len(faulty.ambiguous) == 1
    assert faulty.ambiguous[0]  # the insert carried a token
    assert writer.stats.insert_retries >= 1
    assert writer.stats.dead_lettered == 0
    # Stored once: every accepted event, and not one row more (merges are stopped).
    assert store.count_events(project) == EVENTS
    assert store.count_rows(project) == EVENTS
    # The rollups counted it once, and equal the sums over FINAL.
    rollup = driver.query_rows(
        f"SELECT sum(cost) AS cost, sum(total_tokens) AS tokens "
        f"FROM `{database}`.session_aggregates "
        "WHERE project_id = {p:String} AND session_id = {s:String}",
        {"p": project, "s": sid},
    )[0]
    final = driver.query_rows(
        f"SELECT sum(cost) AS cost, sum(total_tokens) AS tokens FROM `{database}`.events FINAL "
        "WHERE project_id = {p:String} AND event_type != 'session'", {"p": project},
    )[0]
    expected_cost = (EVENTS - 1) * COST
    assert float(rollup["cost"]) == pytest.approx(expected_cost)
    assert float(final["cost"]) == pytest.approx(expected_cost)
    assert int(rollup["tokens"]) == int(final["tokens"]) == (EVENTS - 1) * TOKENS
    # The writer-derived schema rollup counted each path once per event (a retry of an
    # insert whose schema rows were committed adds nothing), and the details count once.
    schema = {(r["event_type"], r["path"]): r["occurrences"]
              for r in store.event_schema(project)}
    assert schema[("model", "metadata.cost")] == EVENTS - 1
    assert schema[("model", "metadata.total_tokens")] == EVENTS - 1
    assert {(r["event_type"], r["event_count"]) for r in store.event_details(project)} == {
        ("session", 1), ("model", EVENTS - 1)}
    session = store.list_sessions(project)["sessions"][0]
    assert session["event_count"] == EVENTS
    assert session["cost"] == pytest.approx(expected_cost)
    # The ingest accounting is exact: the message accepted, stored once, nothing in flight.
    counts = (await ingest_stats(js, DirectStoreClient(store), project))[project].total
    assert_accounted(counts.as_dict(), accepted=EVENTS, stored=store.count_events(project))
    assert counts.stored.messages == 1
    fault_report.record(f"8. ambiguous {ambiguous_table} insert (timed out after commit)",
                        EVENTS,
                        store.count_events(project), writer.stats.dead_lettered,
                        store.count_rows(project) - store.count_events(project), None)
