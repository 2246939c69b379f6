"""Fixtures of the evaluation tests: a local OpenAI-compatible judge server, fresh JetStream
topology on the session's nats-server, and small helpers to wait and to read the stream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from _openai_server import FakeOpenAI, openai_server
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from apiary.queue import NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings


@pytest.fixture(scope="module")
def judge_server() -> Iterator[FakeOpenAI]:
    with openai_server() as fake:
        yield fake


@pytest.fixture
def judge(judge_server: FakeOpenAI) -> FakeOpenAI:
    judge_server.reset()
    return judge_server


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await connect(nats_server.url, name="evaluation-test")
    yield client
    await client.close()


async def fresh_topology(nc: Client, settings: ApiarySettings) -> None:
    """Streams and consumers as ``settings`` make them, with no message of earlier tests."""
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, settings)


async def until(predicate: Callable[[], Awaitable[bool]], wait_s: float = 30.0,
                what: str = "condition") -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {wait_s} s")
