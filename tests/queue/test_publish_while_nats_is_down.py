"""A publish while the NATS connection is down is refused at once, never parked in the
client's reconnect buffer (found by fault 4, tests/faults/test_nats_outages.py).

The bug: nats.py queues a publish made while it reconnects in its pending buffer and
flushes it once the server is back; the caller (an ingest request) waited the whole
publish timeout for an answer that a dead server could not give, holding a request slot,
and the body was sent later anyway. Now :class:`EventPublisher` given its connection
refuses at once (:class:`QueueError`, 503 to an ingest caller) and nothing is sent behind
the caller's back. :meth:`NatsServer.restart` brings the server back on the same port and
store directory, so the client reconnects by itself and what JetStream acknowledged
before the crash is still there.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from apiary.errors import QueueError
from apiary.event import EventBatch, new_event
from apiary.queue import (
    EVENTS_STREAM,
    WIRE_SCHEMA,
    EventPublisher,
    NatsServer,
    connect,
    ensure_topology,
)
from apiary.settings import ApiarySettings


def _batch() -> EventBatch:
    return {"schema": WIRE_SCHEMA, "kind": "spans", "version": 1,
            "tenant": {"org_id": "o", "workspace_id": "w", "project_id": "p1"},
            "events": [new_event(event_id=str(uuid.uuid4()))]}


async def _until(condition: Callable[[], bool], what: str, wait_s: float = 20.0) -> None:
    deadline = time.monotonic() + wait_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {wait_s} s")
        await asyncio.sleep(0.02)


async def test_publish_while_nats_is_down_is_refused_at_once_and_never_sent_later(
        tmp_path: Path) -> None:
    server = NatsServer(tmp_path)
    url = server.start()
    nc = await connect(url, name="test-publish-down")
    try:
        js = nc.jetstream()
        await ensure_topology(js, ApiarySettings(data_dir=tmp_path))
        publisher = EventPublisher(js, timeout=10, max_message_bytes=nc.max_payload,
                                   connection=nc)
        await publisher.publish(_batch(), msg_id="before")

        pid = server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await _until(lambda: not nc.is_connected, "the client noticing the server gone")
        started = time.monotonic()
        with pytest.raises(QueueError) as refused:
            await publisher.publish(_batch(), msg_id="during")
        assert time.monotonic() - started < 1.0  # not the 10 s publish timeout
        assert refused.value.retryable
        assert refused.value.status == 503

        assert await asyncio.to_thread(server.restart) == url  # same port, same store
        await _until(lambda: nc.is_connected, "the client reconnecting by itself")
        await publisher.publish(_batch(), msg_id="after")

        # Acknowledged before the crash: kept. Refused during it: never sent afterwards.
        state = (await js.stream_info(EVENTS_STREAM)).state
        assert state.messages == 2
        ids = [(await js.get_msg(EVENTS_STREAM, seq)).headers["Nats-Msg-Id"]  # type: ignore[index]
               for seq in range(state.first_seq, state.last_seq + 1)]
        assert ids == ["before", "after"]
    finally:
        await nc.close()
        server.stop()


def test_restart_without_a_start_is_refused(tmp_path: Path) -> None:
    with pytest.raises(QueueError):
        NatsServer(tmp_path).restart()
