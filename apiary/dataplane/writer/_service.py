"""One writer of the pool, as its Ray actor (:class:`apiary.actors.writer.EventWriter`) runs
it: connect to NATS, run a :class:`~apiary.dataplane.writer._loop.WriterLoop` on the shared
durable consumer ``events/writers``, report its counters, drain on stop.

JetStream spreads messages over the pool, so adding writers adds throughput without
coordination. :meth:`WriterService.start` is idempotent (a restarted actor calls it again);
:meth:`WriterService.stop` drains: the loop stops fetching, stores and acknowledges
everything it holds, then the connection is drained.

Supervised: the loop runs under :func:`~apiary.queue.outcomes.run_supervised`, which starts
it again with back-off after any exception and counts it (``loop_restarts`` in
:meth:`WriterService.stats`, ``apiary_loop_restarts_total{loop="writer"}``); the messages the
failed run held come back from JetStream. :meth:`WriterService.ensure_running` starts a
supervisor whose task ended. The writer never dies silently.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from nats.aio.client import Client

from apiary.dataplane.writer._loop import WriterLoop
from apiary.objects import object_store
from apiary.queue import connect
from apiary.queue.outcomes import start_supervised, task_ended
from apiary.settings import ApiarySettings
from apiary.store import store_client

log = logging.getLogger("apiary.writer")


class WriterService:
    """One writer named ``name``, consuming from the NATS server at ``nats_url``."""

    def __init__(self, settings: ApiarySettings, nats_url: str, name: str) -> None:
        self._settings = settings
        self._nats_url = nats_url
        self._name = name
        self._nc: Client | None = None
        self._loop: WriterLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Connect and start the supervised loop; a call while it runs does nothing, a call
        after its task ended (it never should) starts it again."""
        if self._stopping.is_set() or (self._task is not None and not self._task.done()):
            return
        if self._loop is None:
            from apiary._private.logs import configure_logging

            configure_logging(self._settings)
            self._nc = await connect(self._nats_url, name=self._name)
            self._loop = WriterLoop(
                js=self._nc.jetstream(),
                store=store_client(self._settings),
                objects=object_store(self._settings),
                settings=self._settings,
                name=self._name,
                connection=self._nc,
            )
        self._task = start_supervised(self._loop.run, self._loop.stats, loop="writer",
                                      stopping=self._stopping, log=log, previous=self._task)

    async def ensure_running(self) -> None:
        """Start the loop again if its task ended (:meth:`start`); idempotent."""
        await self.start()



    async def stats(self) -> dict[str, Any]:
        """The loop's counters with its relinker's and back-fill's (``loop_restarts``
        among them), ``running``, ``pid`` (this process), and ``last_error``; empty
        before :meth:`start`."""
        if self._loop is None:
            return {}
        stats = self._loop.stats.as_dict()
        stats.update(self._loop.relinker.stats.as_dict())
        stats.update(self._loop.backfill.stats.as_dict())
        stats["running"] = self._task is not None and not self._task.done()
        stats["pid"] = os.getpid()
        if self._task is not None and self._task.done() and not self._stopping.is_set():
            stats["last_error"] = f"supervisor ended: {task_ended(self._task)}"
        return stats

    async def stop(self) -> dict[str, Any]:
        """Drain: stop fetching, store and acknowledge everything held, then disconnect.
        Returns the final :meth:`stats`."""
        self._stopping.set()
        if self._loop is not None and self._task is not None:
            self._loop.stop()
            await asyncio.gather(self._task, return_exceptions=True)
            if self._nc is not None:
                await self._nc.drain()
        return await self.stats()


__all__ = ["WriterService"]
