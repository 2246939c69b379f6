"""Fault 7: one poison message and one unstorable span among good traffic; and a message that
crashes its writer process every time it is written.

On real Ray (tests/faults/_ray_pipeline.py): nats-server, the chDB owner actor, a writer
actor, the local dead-letter store, a steady OTLP/HTTP stream through the real data-plane
app. Before issue 13, a failing stage handed back its whole flush (good messages burnt
deliveries and reached the dead-letter queue with the bad one), one unstorable span
dead-lettered its whole request, and a message that crashed the writer was neither stored
nor dead-lettered after ``max_deliver``.

- The poison message does not decode (stage ``decode``). The unstorable span is real: a
  JSON ``api`` batch whose one span has ``metrics`` that is not an object, which the Arrow
  conversion of the insert refuses; its three other spans are good.
- The crash is real: the writer process ends (``os._exit``, as an out-of-memory kill
  would) whenever it is about to insert one marked event. That is the documented
  fault-injection setting ``APIARY_FAULT_EXIT_ON_EVENT_ID`` (``fault_exit_on_event_id``,
  off by default), given to this module's pipeline only; Ray restarts the actor, and the
  test calls ``ensure_running`` as ``apiary up`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest
from _ray_pipeline import (
    ACK_WAIT_S,
    RayPipeline,
    assert_accounted,
    eventually,
    settled_accounting,
    under_stream,
)
from _report import FaultReport

from apiary.errors import StoreUnavailable
from apiary.event import Event, new_event
from apiary.objects import LocalObjectStore
from apiary.queue import WIRE_SCHEMA, EventPublisher, connect, events_subject
from apiary.queue.dead_letters import DeadLetter, DeadLetters, Selection

pytestmark = pytest.mark.ray

#: The event whose insert ends the writer's process (this module's pipeline only).
CRASH_ID = f"fault-crash-{uuid.uuid4()}"
CRASH_LOOP_LIMIT = 3
MAX_DELIVER = 20


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayPipeline]:
    started = RayPipeline(tmp_path_factory.mktemp("faults-poison"), writer_count=1,
                          writer_flush_interval_s=0.1, writer_ack_wait_s=ACK_WAIT_S,
                          writer_max_deliver=MAX_DELIVER,
                          writer_crash_loop_limit=CRASH_LOOP_LIMIT,
                          fault_exit_on_event_id=CRASH_ID)
    try:
        started.start()
        yield started
    finally:
        started.stop()


def _project() -> str:
    return f"proj-{uuid.uuid4().hex[:12]}"


async def _dead_letters(pipeline: RayPipeline, project: str) -> list[DeadLetter]:
    dead = DeadLetters(LocalObjectStore(pipeline.objects_root))
    return await dead.select(Selection(project_id=project, everything=True))


def _span(**fields: object) -> Event:
    now = time.time() * 1000.0
    base: dict[str, object] = dict(
        event_id=str(uuid.uuid4()), session_id=f"s-{uuid.uuid4()}",
        trace_id=uuid.uuid4().hex, event_type="model", config={"model": "gpt-4o-mini"},
        metadata={"prompt_tokens": 40, "completion_tokens": 12}, start_time=now,
        end_time=now + 1)
    base.update(fields)
    return new_event(**base)  # type: ignore[arg-type]


async def _ledger(pipeline: RayPipeline, project: str) -> tuple[int, int]:
    """(stored rows, dead rows) the ingest ledger records for ``project``."""
    totals = await pipeline.store().ledger_totals(project, [(1, 10**12)])
    return (sum(t["stored_rows"] for t in totals), sum(t["dead_rows"] for t in totals))


@contextlib.asynccontextmanager
async def _restarting(pipeline: RayPipeline) -> AsyncIterator[None]:
    """Start again whatever Ray restarted, every half second, as ``apiary up`` does."""
    async def keep() -> None:
        while True:
            with contextlib.suppress(Exception):  # restarting: the next call starts it
                await asyncio.to_thread(pipeline.ensure_running)
            await asyncio.sleep(0.5)

    task = asyncio.create_task(keep())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_poison_message_and_unstorable_span_dead_letter_only_themselves(
        pipeline: RayPipeline, fault_report: FaultReport) -> None:
    project = _project()
    before = pipeline.writer()
    spans = [_span(), _span(metrics="not an object"), _span(), _span()]
    bad_id = spans[1]["event_id"]
    good_ids = {e["event_id"] for e in spans} - {bad_id}
    api_batch = {"schema": WIRE_SCHEMA, "kind": "api", "version": time.time_ns(),
                 "tenant": {"org_id": "o", "workspace_id": "w", "project_id": project},
                 "events": spans}

    async def fault() -> None:
        await pipeline.publish_raw(events_subject("spans", project), b"\x00not a batch")
        await pipeline.publish_raw(events_subject("api", project), orjson.dumps(api_batch))

    async with pipeline.http_ingest(project) as ingest:
        _, ended = await under_stream(pipeline, ingest, fault)
        tally = await pipeline.settle(ingest, wait_s=120)

    seen = f"{tally} statuses={ingest.statuses()} {await pipeline.diagnosis()}"
    # Every good span stored once: the stream's and the api batch's good ones.
    assert set(ingest.statuses()) == {200}, seen  # nothing refused for the poison
    assert tally.stored == tally.accepted > 0, seen
    assert good_ids <= tally.stored_ids, seen
    assert bad_id not in tally.stored_ids, seen
    assert tally.stored_ids == ingest.accepted | good_ids, seen
    assert tally.duplicates == 0, seen
    assert tally.rollup_tokens == tally.final_tokens, seen
    assert abs(tally.rollup_cost - tally.final_cost) <= 1e-9 * max(1.0, tally.final_cost), seen

    # The poison message and the one bad span are dead-lettered, each naming its stage;
    # nothing good is.
    letters = await _dead_letters(pipeline, project)
    assert sorted((d.stage, d.reason, d.rows) for d in letters) == [
        ("decode", "PoisonMessage", 0), ("insert", "PoisonMessage", 1)], seen
    [part] = [d for d in letters if d.stage == "insert"]
    assert part.id.endswith("-spans")
    assert part.msg_id.endswith("-spans")
    assert [e["event_id"] for e in part.payload()["json"]["events"]] == [bad_id]
    assert part.error.startswith("1 of 4 events cannot be stored: insert:"), part.error

    # No good message delivered twice: the writer isolated the failures inside the flush.
    after = pipeline.writer()
    assert after["pid"] == before["pid"], seen  # the writer never died
    assert after["redelivered_messages"] == before["redelivered_messages"], seen
    assert after["suspects"] == before["suspects"], seen
    assert after["spans_dead_lettered"] == before["spans_dead_lettered"] + 1, seen
    assert after["isolations"] > before["isolations"], seen

    # The ledger: every message settled, the bad span as dead rows; GET /v1/ingest/stats
    # exact, in spans: the stream's and the api batch's spans accepted, the bad one
    # dead-lettered (the poison message decodes to no span: a dead message of 0 rows).
    stored_rows, dead_rows = await _ledger(pipeline, project)
    assert (stored_rows, dead_rows) == (tally.accepted + len(good_ids), 1), seen
    counts = tally.accounting
    assert_accounted(counts, accepted=tally.accepted + len(spans),
                     stored=len(tally.stored_ids), dead_lettered=1, context=seen)
    assert counts["dead_lettered"]["messages"] == 2, counts  # the poison, the split one

    fault_report.record("7. poison message + unstorable span",
                        accepted=counts["accepted"]["rows"], stored=counts["stored"]["rows"],
                        dead_lettered=counts["dead_lettered"]["rows"],
                        duplicates=tally.duplicates,
                        recovery_s=tally.settled_at - ended)


async def test_a_message_that_crashes_its_writer_is_dead_lettered_before_max_deliver(
        pipeline: RayPipeline, fault_report: FaultReport) -> None:
    project = _project()
    before = pipeline.writer()
    store = pipeline.store()
    crasher = {"schema": WIRE_SCHEMA, "kind": "spans", "version": time.time_ns(),
               "tenant": {"org_id": "o", "workspace_id": "w", "project_id": project},
               "events": [_span(event_id=CRASH_ID)]}

    async def publish_crasher() -> None:
        nc = await connect(pipeline.nats.url, name="faults-crasher")
        try:
            publisher = EventPublisher(nc.jetstream(), timeout=10,
                                       max_message_bytes=nc.max_payload)
            await publisher.publish(crasher, msg_id=f"crasher-{uuid.uuid4().hex}")
        finally:
            await nc.close()

    async with _restarting(pipeline):
        # Good traffic around the crasher: it shares flushes with good messages.
        traffic = asyncio.create_task(pipeline.publish_steadily(
            project, batches=40, per_batch=5, interval_s=0.05))
        await eventually(lambda: _stored_some(pipeline, project), 60, "the stream stored")
        await publish_crasher()
        published = await traffic
        began = time.monotonic()

        async def settled() -> bool:
            try:
                return (await store.count_events(project) == len(published)
                        and any(d.stage == "crash_loop"
                                for d in await _dead_letters(pipeline, project))
                        and await pipeline.drained())
            except StoreUnavailable:
                return False

        try:
            await eventually(settled, (CRASH_LOOP_LIMIT + 1) * (ACK_WAIT_S + 60) + 60,
                             "the crasher dead-lettered and every good event stored",
                             every_s=0.5)
        except AssertionError as exc:
            letters = [(d.stage, d.deliveries, d.error)
                       for d in await _dead_letters(pipeline, project)]
            stored = await store.count_events(project)
            raise AssertionError(f"{exc}; stored {stored} of {len(published)}, dead letters "
                                 f"{letters}; {await pipeline.diagnosis()}") from None
        recovered = time.monotonic()

    seen = await pipeline.diagnosis()
    # Every good event stored exactly once, none dead-lettered.
    assert await store.count_rows(project) == len(published), seen
    assert await store.count_duplicate_rows(project) == 0, seen
    [letter] = await _dead_letters(pipeline, project)
    assert (letter.stage, letter.rows) == ("crash_loop", 1), seen
    assert f"crashed its writer {CRASH_LOOP_LIMIT} times" in letter.error
    # Dead-lettered on the delivery after its last crash, long before max_deliver.
    assert letter.deliveries == CRASH_LOOP_LIMIT + 1 < MAX_DELIVER, letter
    assert [e["event_id"] for e in letter.payload()["json"]["events"]] == [CRASH_ID]
    assert CRASH_ID not in {e["event_id"] for e in (await store.export(
        project, {"limit": 1000}))["events"]}

    after = pipeline.writer()
    assert after["pid"] != before["pid"], seen  # the writer process did die
    assert after["crash_loops"] == 1, seen  # counted by the process that dead-lettered it
    assert after["running"] is True
    stored_rows, dead_rows = await _ledger(pipeline, project)
    assert (stored_rows, dead_rows) == (len(published), 1), seen
    counts = await settled_accounting(lambda: pipeline.accounting(project), 30)
    assert_accounted(counts, accepted=len(published) + 1, stored=len(published),
                     dead_lettered=1, context=seen)

    fault_report.record("7b. message crashing its writer", accepted=len(published) + 1,
                        stored=len(published), dead_lettered=1, duplicates=0,
                        recovery_s=recovered - began)


async def _stored_some(pipeline: RayPipeline, project: str) -> bool:
    try:
        return await pipeline.store().count_events(project) > 0
    except StoreUnavailable:
        return False
