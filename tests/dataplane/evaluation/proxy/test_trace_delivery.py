"""The trace sink on a real JetStream: it keeps a model event until the stream has it, slims
an event too large for a message, and gives up (loudly) only after its retry window."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from apiary.dataplane.evaluation.proxy.tracing import CallTrace, TraceSink
from apiary.event import Tenant
from apiary.queue import (
    EVENTS_STREAM,
    EventPublisher,
    NatsServer,
    connect,
    decode_batch,
    ensure_topology,
    events_subject,
)
from apiary.settings import ApiarySettings


@pytest.fixture
async def nats(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Client]:
    nc = await connect(nats_server.url, name="trace-delivery-test")
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, ApiarySettings(data_dir=tmp_path))
    yield nc
    await nc.close()


def _tenant() -> Tenant:
    return {"org_id": "org-1", "workspace_id": "ws-1",
            "project_id": f"proj-trace-{uuid.uuid4().hex[:8]}"}


def _trace(tenant: Tenant, content: str = "hi") -> CallTrace:
    trace = CallTrace(tenant=tenant, caller="key:k", provider="openai", model="gpt-4o-mini",
                      credential_id="c", messages=[{"role": "user", "content": content}],
                      hyperparameters={}, stream=False)
    trace.succeed({"choices": [{"message": {"role": "assistant", "content": "ok"},
                                "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}},
                  cost=0.001)
    return trace


async def _stored(nc: Client, tenant: Tenant) -> dict[str, object]:
    message = await nc.jetstream().get_last_msg(EVENTS_STREAM,
                                                events_subject("api", tenant["project_id"]))
    assert message.data is not None
    batch = decode_batch(message.data)
    assert batch["tenant"] == tenant
    [event] = batch["events"]
    return dict(event)


async def test_an_event_waits_for_jetstream_and_is_published_once_it_is_back(
        nats: Client) -> None:
    js = nats.jetstream()
    sink = TraceSink(EventPublisher(js, timeout=1.0, max_message_bytes=nats.max_payload),
                     first_backoff_s=0.05, max_backoff_s=0.2)
    # The stream refuses every message (too small to take one; it discards new ones), the
    # way a full stream does; its consumers stay, so what it takes later is kept for them.
    config = (await js.stream_info(EVENTS_STREAM)).config
    full_size = config.max_bytes
    config.max_bytes = 256
    await js.update_stream(config)
    tenant = _tenant()
    trace = _trace(tenant)
    sink.submit(tenant, trace.event())
    await asyncio.sleep(1.5)
    assert (sink.pending, sink.published, sink.dropped) == (1, 0, 0)
    config.max_bytes = full_size
    await js.update_stream(config)
    assert await sink.drain(30)
    assert (sink.pending, sink.published, sink.dropped) == (0, 1, 0)
    event = await _stored(nats, tenant)
    assert event["event_id"] == trace.event_id
    assert event["metadata"]["cost"] == 0.001  # type: ignore[index]


async def test_an_event_too_large_for_a_message_is_published_without_its_messages(
        nats: Client) -> None:
    sink = TraceSink(EventPublisher(nats.jetstream(), timeout=5.0, max_message_bytes=16_384))
    tenant = _tenant()
    trace = _trace(tenant, content="x" * 50_000)
    sink.submit(tenant, trace.event())
    assert await sink.drain(30)
    event = await _stored(nats, tenant)
    assert event["event_id"] == trace.event_id
    assert event["inputs"] == {}
    assert event["metadata"]["truncated"] is True  # type: ignore[index]
    assert event["metadata"]["total_tokens"] == 4  # type: ignore[index]


async def test_the_sink_gives_up_after_its_retry_window(
        nats: Client, caplog: pytest.LogCaptureFixture) -> None:
    js = nats.jetstream()
    sink = TraceSink(EventPublisher(js, timeout=0.5, max_message_bytes=nats.max_payload),
                     retry_for_s=1.0, first_backoff_s=0.05, max_backoff_s=0.2)
    await js.delete_stream(EVENTS_STREAM)
    trace = _trace(_tenant())
    # Listen on the sink's own logger: "apiary" may not propagate to the root logger.
    logger = logging.getLogger("apiary.dataplane.evaluation.proxy")
    logger.addHandler(caplog.handler)
    try:
        sink.submit(trace.tenant, trace.event())
        assert await sink.drain(30)
    finally:
        logger.removeHandler(caplog.handler)
    assert (sink.published, sink.dropped) == (0, 1)
    assert any(r.getMessage() == "proxy trace dropped"
               and getattr(r, "event_id", None) == trace.event_id for r in caplog.records)
