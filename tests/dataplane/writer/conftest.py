"""Fixtures of the writer tests: a fresh JetStream topology and a writer harness."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _writer_loops import Writers, writer_settings
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from apiary.queue import NatsServer, connect, ensure_topology
from apiary.store import EventStore


@pytest.fixture
async def nc(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Client]:
    client = await connect(nats_server.url, name="writer-test")
    js = client.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, writer_settings(tmp_path))
    yield client
    await client.close()


@pytest.fixture
async def writers(nc: Client, store: EventStore, tmp_path: Path) -> AsyncIterator[Writers]:
    handle = Writers(nc, store, tmp_path)
    yield handle
    for loop, task in handle.running:
        loop.stop()
        await task
