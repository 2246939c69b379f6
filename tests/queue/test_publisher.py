from __future__ import annotations

import contextlib
import uuid

import pytest
from nats.js.errors import NotFoundError

from apiary.errors import PayloadTooLarge, PipelineBackpressure
from apiary.event import EventBatch, new_event
from apiary.queue import (
    ARROW_ENCODING,
    ENCODING_HEADER,
    ROWS_HEADER,
    WIRE_SCHEMA,
    EventPublisher,
    NatsServer,
    TableBatch,
    connect,
    decode_batch,
    encode_batch,
    encode_table,
    ensure_topology,
    message_rows,
)
from apiary.settings import ApiarySettings
from apiary.store import events_to_arrow


def _batch(n: int, text: str = "x") -> EventBatch:
    return {
        "schema": WIRE_SCHEMA,
        "kind": "spans",
        "tenant": {"org_id": "o", "workspace_id": "w", "project_id": "p1"},
        "version": 1,
        "events": [
            new_event(event_id=str(uuid.uuid4()), inputs={"prompt": text}) for _ in range(n)
        ],
    }


@pytest.fixture
async def js(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    nc = await connect(nats_server.url, name="test")
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):  # absent on first use
            await js.delete_stream(stream)
    await ensure_topology(js, ApiarySettings(data_dir=tmp_path_factory.mktemp("s")))
    yield js
    await nc.close()


async def test_publish_is_durable_and_readable(js) -> None:  # type: ignore[no-untyped-def]
    publisher = EventPublisher(js, timeout=5, max_message_bytes=1024 * 1024)
    batch = _batch(3)
    assert await publisher.publish(batch, msg_id="req-1") == 1
    sub = await js.pull_subscribe_bind("writers", "events")
    [msg] = await sub.fetch(1, timeout=2)
    assert msg.subject == "events.spans.p1"
    assert msg.headers["Nats-Msg-Id"] == "req-1"
    assert decode_batch(msg.data)["events"] == batch["events"]
    await msg.ack()


async def test_same_msg_id_is_stored_once(js) -> None:  # type: ignore[no-untyped-def]
    publisher = EventPublisher(js, timeout=5, max_message_bytes=1024 * 1024)
    await publisher.publish(_batch(2), msg_id="dup")
    await publisher.publish(_batch(2), msg_id="dup")
    info = await js.stream_info("events")
    assert info.state.messages == 1


async def test_large_batch_is_split_into_messages_that_fit(js) -> None:  # type: ignore[no-untyped-def]
    publisher = EventPublisher(js, timeout=5, max_message_bytes=64 * 1024)
    batch = _batch(40, text="y" * 4000)
    parts = await publisher.publish(batch, msg_id="big")
    assert parts > 1
    sub = await js.pull_subscribe_bind("writers", "events")
    msgs = await sub.fetch(parts, timeout=2)
    received = [e for m in msgs for e in decode_batch(m.data)["events"]]
    assert sorted(e["event_id"] for e in received) == sorted(e["event_id"] for e in batch["events"])
    assert all(len(m.data) <= 64 * 1024 for m in msgs)


async def test_single_event_above_limit_is_refused(js) -> None:  # type: ignore[no-untyped-def]
    publisher = EventPublisher(js, timeout=5, max_message_bytes=16 * 1024)
    with pytest.raises(PayloadTooLarge):
        await publisher.publish(_batch(1, text="z" * 20_000), msg_id="huge")


async def test_full_stream_answers_backpressure(  # type: ignore[no-untyped-def]
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    nc = await connect(nats_server.url, name="full")
    js = nc.jetstream()
    with contextlib.suppress(NotFoundError):
        await js.delete_stream("events")
    tiny = ApiarySettings(data_dir=tmp_path_factory.mktemp("t"),
                          events_stream_max_bytes=1024 * 1024)
    await ensure_topology(js, tiny)
    publisher = EventPublisher(js, timeout=5, max_message_bytes=512 * 1024)
    refused: PipelineBackpressure | None = None
    for i in range(20):
        try:
            await publisher.publish(_batch(10, text="w" * 10_000), msg_id=f"fill-{i}")
        except PipelineBackpressure as exc:
            refused = exc
            break
    assert refused is not None, "a 1 MiB stream took 2 MiB"
    assert refused.retry_after > 0
    assert i >= 5  # it did take what fit
    await js.delete_stream("events")
    await nc.close()


async def test_every_message_says_how_many_rows_it_holds(js) -> None:  # type: ignore[no-untyped-def]
    publisher = EventPublisher(js, timeout=5, max_message_bytes=64 * 1024)
    batch = _batch(40, text="y" * 4000)
    parts = await publisher.publish(batch, msg_id="counted")
    tenant = batch["tenant"]
    spans = TableBatch("spans", tenant, 1, events_to_arrow(tenant, 1, _batch(7)["events"]))
    parts += await publisher.publish_table(spans, msg_id="counted-spans")
    patch: EventBatch = {**_batch(0), "kind": "updates",  # type: ignore[typeddict-item]
                         "patches": [{"event_id": "e1", "version": 2, "feedback": {"a": 1}}]}
    parts += await publisher.publish(patch, msg_id="counted-patch")
    sub = await js.pull_subscribe_bind("writers", "events")
    msgs = await sub.fetch(parts, timeout=2)
    assert len(msgs) == parts > 3  # the JSON batch was split
    counts = [int(m.headers[ROWS_HEADER]) for m in msgs]
    assert sum(counts) == 40 + 7 + 1
    for m in msgs:  # the header is the count the payload holds
        assert message_rows(m.headers, m.data) == message_rows(
            {k: v for k, v in m.headers.items() if k != ROWS_HEADER}, m.data)


def test_message_rows_counts_messages_without_the_header() -> None:
    tenant = {"org_id": "o", "workspace_id": "w", "project_id": "p1"}
    table = events_to_arrow(tenant, 1, _batch(5)["events"])  # type: ignore[arg-type]
    arrow = encode_table(TableBatch("spans", tenant, 1, table))  # type: ignore[arg-type]
    assert message_rows({ENCODING_HEADER: ARROW_ENCODING}, arrow) == 5
    assert message_rows(None, encode_batch(_batch(3))) == 3
    assert message_rows({}, b"not a batch") == 0  # undecodable: holds nothing storable
    assert message_rows({ROWS_HEADER: "12"}, None) == 12
    assert message_rows({ROWS_HEADER: "-1"}, b"") == 0
