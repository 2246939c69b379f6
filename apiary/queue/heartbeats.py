"""Heartbeats of the pipeline's loops, in a JetStream key-value bucket, for readiness.

A loop (a writer, say) runs a :class:`Heartbeat`: every ``period_s`` it writes
``<role>.<name>`` = ``{"at": <unix time>, "running": <bool>, "error": <str>}`` to the
bucket :data:`HEARTBEATS_BUCKET`, whose entries expire after :data:`ENTRY_TTL_S`. The data
plane's ``/readyz`` reads them (:func:`read_heartbeats`): a loop whose last beat is older
than a few periods has died or hangs (a process killed with ``kill -9`` beats no more), one
that reports ``running: false`` has ended with an error. A loop that stops on request
deletes its key, so a pool that shrinks leaves no stale entry behind.

Guarantees: a beat is best effort (a NATS outage skips beats, which readiness then reports
as stale, as it should); nothing here ever raises into the loop it reports on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

#: The bucket holding the heartbeats.
HEARTBEATS_BUCKET = "apiary-heartbeats"
#: How long an entry outlives its last beat (a loop that vanished without deleting its key).
ENTRY_TTL_S = 60.0

log = logging.getLogger("apiary.heartbeats")


async def heartbeats_bucket(js: JetStreamContext) -> KeyValue:
    """The heartbeats bucket, created if missing (memory storage: beats need no fsync)."""
    try:
        return await js.key_value(HEARTBEATS_BUCKET)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(KeyValueConfig(
            bucket=HEARTBEATS_BUCKET, history=1, ttl=ENTRY_TTL_S, storage=StorageType.MEMORY,
        ))


@dataclass(frozen=True)
class Beat:
    """The last beat of one loop: ``role`` (e.g. ``writer``), ``name``, its age in seconds,
    whether the loop was running, and its error when it was not."""

    role: str
    name: str
    age_s: float
    running: bool
    error: str = ""


class Heartbeat:
    """Beats for the loop ``role``/``name`` every ``period_s`` while :meth:`run` runs;
    ``running`` says whether the loop is still alive (e.g. its task is not done), ``error``
    what ended it."""

    def __init__(self, js: JetStreamContext, role: str, name: str, *,
                 running: Callable[[], bool], error: Callable[[], str] = lambda: "",
                 period_s: float = 1.0) -> None:
        self._js = js
        self.key = f"{role}.{_key_part(name)}"
        self._running = running
        self._error = error
        self._period = period_s
        self._kv: KeyValue | None = None

    async def beat(self) -> bool:
        """Write one beat now; False if NATS did not take it."""
        try:
            if self._kv is None:
                self._kv = await heartbeats_bucket(self._js)
            running = self._running()
            value = {"at": time.time(), "running": running, "pid": os.getpid(),
                     "error": "" if running else self._error()}
            await self._kv.put(self.key, orjson.dumps(value))
        except Exception as exc:  # best effort: readiness sees the missed beat
            log.debug("heartbeat failed", extra={"key": self.key, "error": repr(exc)})
            return False
        return True

    async def run(self) -> None:
        """Beat until cancelled.

        A cancellation that lands while a beat waits on NATS can be swallowed below it
        (Python 3.11's ``asyncio.wait_for``, which nats-py's requests use, drops a cancel
        that races the reply): the task is still marked as cancelling, so the loop checks
        that after each beat and ends. Without it the loop slept on, and a writer that
        stopped waited for it forever (two CI runs stalled in fixture teardowns)."""
        task = asyncio.current_task()
        while True:
            await self.beat()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            await asyncio.sleep(self._period)

    async def clear(self) -> None:
        """Delete this loop's key (it stopped on request); best effort."""
        with contextlib.suppress(Exception):
            if self._kv is None:
                self._kv = await heartbeats_bucket(self._js)
            await self._kv.delete(self.key)


async def read_heartbeats(js: JetStreamContext, role: str) -> list[Beat]:
    """The last beat of every loop of ``role`` whose entry has not expired or been deleted."""
    kv = await heartbeats_bucket(js)
    watcher = await kv.watch(f"{role}.>", ignore_deletes=True)
    now = time.time()
    beats = []
    try:
        async for entry in watcher:
            if entry is None:  # the end of what is stored now
                break
            if not entry.value:
                continue
            value = orjson.loads(entry.value)
            beats.append(Beat(role, entry.key.split(".", 1)[1],
                              max(0.0, now - float(value["at"])), bool(value.get("running")),
                              str(value.get("error") or "")))
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]
    return sorted(beats, key=lambda b: b.name)


def _key_part(name: str) -> str:
    """``name`` as one token of a key (NATS keys: letters, digits, ``-_=/``)."""
    return "".join(c if c.isalnum() or c in "-_=" else "_" for c in name)


__all__ = ["ENTRY_TTL_S", "HEARTBEATS_BUCKET", "Beat", "Heartbeat", "heartbeats_bucket",
           "read_heartbeats"]
