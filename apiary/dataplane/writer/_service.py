"""One writer of the pool, as its Ray actor (:class:`apiary.actors.writer.EventWriter`) runs
it: connect to NATS, run a :class:`~apiary.dataplane.writer._loop.WriterLoop` on the shared
durable consumer ``events/writers``, report its counters, drain on stop.

JetStream spreads messages over the pool, so adding writers adds throughput without
coordination. :meth:`WriterService.start` is idempotent (a restarted actor calls it again);
:meth:`WriterService.stop` drains: the loop stops fetching, stores and acknowledges
everything it holds, then the connection is drained.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.aio.client import Client

from apiary.dataplane.writer._loop import WriterLoop
from apiary.objects import object_store
from apiary.queue import connect
from apiary.settings import ApiarySettings
from apiary.store import store_client


class WriterService:
    """One writer named ``name``, consuming from the NATS server at ``nats_url``."""

    def __init__(self, settings: ApiarySettings, nats_url: str, name: str) -> None:
        self._settings = settings
        self._nats_url = nats_url
        self._name = name
        self._nc: Client | None = None
        self._loop: WriterLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and start consuming; a second call does nothing."""
        if self._task is not None:
            return
        from apiary._private.logs import configure_logging

        configure_logging(self._settings)
        self._nc = await connect(self._nats_url, name=self._name)
        self._loop = WriterLoop(
            js=self._nc.jetstream(),
            store=store_client(self._settings),
            objects=object_store(self._settings),
            settings=self._settings,
            name=self._name,
        )
        self._task = asyncio.create_task(self._loop.run())

    async def stats(self) -> dict[str, Any]:
        """The loop's counters with its relinker's and back-fill's, ``running``, and
        ``last_error`` when the loop ended with an error; empty before :meth:`start`."""
        if self._loop is None:
            return {}
        stats = self._loop.stats.as_dict()
        stats.update(self._loop.relinker.stats.as_dict())
        stats.update(self._loop.backfill.stats.as_dict())
        stats["running"] = self._task is not None and not self._task.done()
        if self._task is not None and self._task.done() and self._task.exception():
            stats["last_error"] = repr(self._task.exception())
        return stats

    async def stop(self) -> dict[str, Any]:
        """Drain: stop fetching, store and acknowledge everything held, then disconnect.
        Returns the final :meth:`stats`."""
        if self._loop is not None and self._task is not None:
            self._loop.stop()
            await asyncio.gather(self._task, return_exceptions=True)
            if self._nc is not None:
                await self._nc.drain()
        return await self.stats()


__all__ = ["WriterService"]
