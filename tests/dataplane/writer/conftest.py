"""Fixtures of the writer tests: a fresh JetStream topology and a writer harness."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

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
    await _bounded(client.close(), "closing the NATS client")


@pytest.fixture
async def writers(nc: Client, store: EventStore, tmp_path: Path) -> AsyncIterator[Writers]:
    handle = Writers(nc, store, tmp_path)
    yield handle
    for loop, task in handle.running:
        loop.stop()
        await _bounded(task, f"stopping writer loop {loop.name}")


#: How long a teardown step may take before it is abandoned with its tasks' stacks shown.
TEARDOWN_S = 60.0


async def _bounded(awaitable: Awaitable[Any], what: str) -> None:
    """Await a teardown step; past TEARDOWN_S, print every task's stack (what it waits on)
    and warn instead of hanging the session: once in three full runs (2026-12-06), after
    tests/dataplane/writer/test_relink.py's second test had passed, its teardown waited on
    an event loop with nothing to do until CI's limit, and no stack said on what."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=TEARDOWN_S)
    if done:
        task.result()
        return
    for other in asyncio.all_tasks():
        print(f"--- task {other.get_name()} ---", file=sys.stderr)
        other.print_stack(file=sys.stderr)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    warnings.warn(f"teardown: {what} took over {TEARDOWN_S:.0f} s; cancelled (stacks on "
                  "stderr)", stacklevel=2)
