"""The parent against a subverted worker: whatever comes down the socket, it reads a
bounded amount, parses only JSON, kills the process and raises a SandboxError.

A fake worker (a sleeping process standing in for the worker's pid, and our end of a
socket pair playing its side of the protocol) replaces a real, escaped one.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator

import pytest

from apiary.dataplane.evaluation.sandbox import SandboxLimits, SandboxPool
from apiary.dataplane.evaluation.sandbox.pool import _Worker
from apiary.errors import SandboxResourceLimit, SandboxRuntimeError

LIMITS = SandboxLimits(max_output_bytes=4096)


class FakeWorker:
    def __init__(self, worker: _Worker, peer: socket.socket,
                 process: asyncio.subprocess.Process) -> None:
        self.worker = worker
        self.peer = peer
        self.process = process


@pytest.fixture
async def fake() -> AsyncIterator[FakeWorker]:
    process = await asyncio.create_subprocess_exec("sleep", "60")
    ours, peer = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours, limit=LIMITS.max_output_bytes
                                                   + 64 * 1024)
    worker = _Worker(process.pid, os.pidfd_open(process.pid), reader, writer, {})
    yield FakeWorker(worker, peer, process)
    peer.close()
    if process.returncode is None:
        process.kill()
    await process.wait()


def closed_pool() -> SandboxPool:
    # Closed so that losing the fake worker forks no replacement.
    pool = SandboxPool(1, LIMITS)
    pool._closed = True
    return pool


async def test_flood_without_newline_is_cut_and_the_worker_killed(fake: FakeWorker) -> None:
    pool = closed_pool()
    flood = asyncio.create_task(asyncio.to_thread(fake.peer.sendall, b"x" * (8 << 20)))
    with pytest.raises(SandboxResourceLimit) as info:
        await pool._call(fake.worker, 1, b'{"id": 1}\n')
    assert info.value.context["limit"] == "output"
    assert await asyncio.wait_for(fake.process.wait(), 10) == -9  # SIGKILL via the pidfd
    with pytest.raises(ConnectionError):
        await flood  # the parent closed its end instead of reading 8 MB


async def test_non_json_reply(fake: FakeWorker) -> None:
    fake.peer.sendall(b"\x80(pickle)\n")
    with pytest.raises(SandboxRuntimeError, match="malformed reply"):
        await closed_pool()._call(fake.worker, 1, b'{"id": 1}\n')
    assert await asyncio.wait_for(fake.process.wait(), 10) == -9


async def test_reply_out_of_turn(fake: FakeWorker) -> None:
    fake.peer.sendall(b'{"id": 7, "ok": true, "score": 1}\n')
    with pytest.raises(SandboxRuntimeError, match="out of turn"):
        await closed_pool()._call(fake.worker, 1, b'{"id": 1}\n')
    assert await asyncio.wait_for(fake.process.wait(), 10) == -9


async def test_forged_result_types(fake: FakeWorker) -> None:
    fake.peer.sendall(b'{"id": 1, "ok": true, "score": {"a": 1}, "retire": false}\n')
    with pytest.raises(SandboxRuntimeError, match="malformed result"):
        await closed_pool()._call(fake.worker, 1, b'{"id": 1}\n')
