"""Delivery outcomes (apiary/queue/outcomes.py) on a real nats-server: a dead letter that
cannot be written keeps its message in the stream until it is durable; a supervised loop
is started again after any exception, and counted."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from _read_only_dirs import read_only
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig

from apiary.errors import StoreUnavailable
from apiary.objects import LocalObjectStore
from apiary.queue import NatsServer, connect
from apiary.queue.outcomes import DeadLetterInfo, Outcomes, run_supervised

log = logging.getLogger("tests.outcomes")
ACK_WAIT_S = 1.0


@dataclass
class Stats:
    dead_lettered: int = 0
    last_error: str = ""
    dead_letter_failures: int = 0
    dead_letters_pending: int = 0


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await connect(nats_server.url, name="outcomes-test")
    yield client
    await client.close()


async def _until(predicate: Callable[[], Awaitable[bool]], wait_s: float, what: str) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {wait_s} s")


async def test_dead_letter_store_read_only_keeps_the_message_until_its_record_is_durable(
        nc: Client, tmp_path: Path) -> None:
    js = nc.jetstream()
    stream = f"outcomes{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=stream, subjects=[f"{stream}.>"])
    await js.add_consumer(stream, ConsumerConfig(
        durable_name="c", ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S, max_deliver=3))
    try:
        await js.publish(f"{stream}.x", b"poison")
        sub = await js.pull_subscribe_bind("c", stream)
        [msg] = await sub.fetch(1, timeout=5)
        root = tmp_path / "objects"
        stats = Stats()
        outcomes = Outcomes(stream=stream, objects=LocalObjectStore(root), stats=stats,
                            log=log, what="message", keep_alive_s=ACK_WAIT_S / 4)
        with read_only(root):
            await outcomes.dead_letter(msg, ValueError("cannot decode"))  # does not raise
            assert stats.dead_letter_failures == 1
            assert stats.dead_lettered == 0
            assert outcomes.pending == 1
            assert stats.dead_letters_pending == 1
            # Three ack_waits later the message is still held here: never redelivered,
            # no delivery burned, still in the stream.
            failed_at = time.monotonic()
            while time.monotonic() - failed_at < 3 * ACK_WAIT_S:
                info = await js.consumer_info(stream, "c")
                assert info.num_redelivered == 0
                assert info.num_ack_pending == 1
                await asyncio.sleep(0.2)
            assert stats.dead_letter_failures >= 2  # retried meanwhile
            assert (await js.stream_info(stream)).state.messages == 1

        async def terminated() -> bool:
            info = await js.consumer_info(stream, "c")
            return stats.dead_lettered == 1 and info.num_ack_pending == 0
        await _until(terminated, 30.0, "the dead letter written and the message terminated")
        assert outcomes.pending == 0
        assert stats.dead_letters_pending == 0
        keys = await LocalObjectStore(root).keys(f"dlq/{stream}/")
        assert len(keys) == 1
        record = orjson.loads(await LocalObjectStore(root).get(keys[0]))
        assert record["error_type"] == "ValueError"
        assert record["deliveries"] == 1
        info = await js.consumer_info(stream, "c")
        assert info.num_redelivered == 0
        assert info.num_pending == 0
    finally:
        await js.delete_stream(stream)


async def test_close_abandons_the_retries_and_the_message_comes_back(
        nc: Client, tmp_path: Path) -> None:
    js = nc.jetstream()
    stream = f"outcomes{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=stream, subjects=[f"{stream}.>"])
    await js.add_consumer(stream, ConsumerConfig(
        durable_name="c", ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S, max_deliver=3))
    try:
        await js.publish(f"{stream}.x", b"poison")
        sub = await js.pull_subscribe_bind("c", stream)
        [msg] = await sub.fetch(1, timeout=5)
        root = tmp_path / "objects"
        stats = Stats()
        outcomes = Outcomes(stream=stream, objects=LocalObjectStore(root), stats=stats,
                            log=log, what="message", keep_alive_s=ACK_WAIT_S / 4)
        with read_only(root):
            await outcomes.dead_letter(msg, ValueError("cannot decode"))
            await outcomes.close()
            assert outcomes.pending == 0
            [again] = await sub.fetch(1, timeout=10 * ACK_WAIT_S)  # ack_wait, then back
            assert again.data == b"poison"
            assert again.metadata.num_delivered == 2
        assert stats.dead_lettered == 0
        await outcomes.dead_letter(again, ValueError("cannot decode"))
        assert stats.dead_lettered == 1
        assert len(await LocalObjectStore(root).keys(f"dlq/{stream}/")) == 1
    finally:
        await js.delete_stream(stream)


async def test_a_failing_durable_hook_holds_the_message_until_it_succeeds(
        nc: Client, tmp_path: Path) -> None:
    """The consumer's hook (the writer's ledger entry) runs once the record is durable and
    before ``term``; while it fails the message is held (no delivery burned) and the hook
    retried; the record is written once and says its stage, project and rows."""
    js = nc.jetstream()
    stream = f"outcomes{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=stream, subjects=[f"{stream}.>"])
    await js.add_consumer(stream, ConsumerConfig(
        durable_name="c", ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S, max_deliver=3))
    try:
        await js.publish(f"{stream}.spans.proj-h", b"poison")
        sub = await js.pull_subscribe_bind("c", stream)
        [msg] = await sub.fetch(1, timeout=5)
        root = tmp_path / "objects"
        stats = Stats()
        outcomes = Outcomes(stream=stream, objects=LocalObjectStore(root), stats=stats,
                            log=log, what="message", keep_alive_s=ACK_WAIT_S / 4)
        calls: list[float] = []

        async def durable() -> None:
            calls.append(time.monotonic())
            assert len(await LocalObjectStore(root).keys(f"dlq/{stream}/")) == 1
            if len(calls) < 3:
                raise StoreUnavailable("the ledger's store is away")

        await outcomes.dead_letter(msg, ValueError("cannot decode"),
                                   info=DeadLetterInfo(stage="decode", rows=0),
                                   durable=durable)
        assert stats.dead_letter_failures == 1
        assert "hook failed" in stats.last_error
        assert outcomes.pending == 1

        async def terminated() -> bool:
            info = await js.consumer_info(stream, "c")
            return stats.dead_lettered == 1 and info.num_ack_pending == 0

        await _until(terminated, 30.0, "the hook succeeded and the message terminated")
        assert len(calls) == 3
        assert calls[2] - calls[0] > ACK_WAIT_S  # held past ack_wait meanwhile ...
        info = await js.consumer_info(stream, "c")
        assert info.num_redelivered == 0  # ... without a redelivery
        [key] = await LocalObjectStore(root).keys(f"dlq/{stream}/")
        record = orjson.loads(await LocalObjectStore(root).get(key))
        assert (record["stage"], record["project_id"], record["rows"]) == (
            "decode", "proj-h", 0)
    finally:
        await js.delete_stream(stream)


async def test_supervised_loop_restarts_after_any_exception_and_counts_it() -> None:
    stopping = asyncio.Event()
    runs: list[float] = []
    restarts: list[BaseException] = []

    async def run() -> None:
        runs.append(time.monotonic())
        if len(runs) == 1:
            raise RuntimeError("a bug")
        if len(runs) == 2:
            return  # ended without being asked: restarted too
        await stopping.wait()

    task = asyncio.create_task(run_supervised(
        run, loop="test", stopping=stopping, on_restart=restarts.append, log=log,
        first_delay_s=0.05, max_delay_s=0.2))
    await _until(_async(lambda: len(runs) == 3), 10.0, "the third run")
    assert [type(e) for e in restarts] == [RuntimeError, RuntimeError]
    assert "a bug" in str(restarts[0])
    assert "without being stopped" in str(restarts[1])
    assert runs[1] - runs[0] >= 0.05
    assert runs[2] - runs[1] >= 0.1
    stopping.set()
    await asyncio.wait_for(task, 5.0)  # a stop ends it
    assert len(runs) == 3


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def predicate() -> bool:
        return check()
    return predicate
