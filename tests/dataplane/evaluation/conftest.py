"""Fixtures of the evaluation tests: a local OpenAI-compatible judge server and a NATS
connection to the session's nats-server (a fresh topology and a wait: ``_fresh_topology``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from _openai_server import FakeOpenAI, openai_server
from nats.aio.client import Client

from apiary.queue import NatsServer, connect


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
