"""Writer actors: the pool that moves events from JetStream into ClickHouse.

Each :class:`EventWriter` runs one :class:`~apiary.dataplane.writer._loop.WriterLoop` on the
shared durable consumer ``events/writers``; JetStream spreads messages over the pool, so
adding writers adds throughput without coordination. :class:`WriterPool` starts, inspects
and stops them; stopping drains (each writer stores what it holds before it exits).
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from apiary.actors.clickhouse import store_client
from apiary.dataplane.writer._loop import WriterLoop
from apiary.objects import object_store
from apiary.queue import connect
from apiary.settings import ApiarySettings

NAMESPACE = "apiary"


@ray.remote(max_restarts=-1, max_task_retries=0)
class EventWriter:
    """One writer. Restarted by Ray if it dies; JetStream redelivers what it held."""

    def __init__(self, settings: ApiarySettings, nats_url: str, name: str) -> None:
        self._settings = settings
        self._nats_url = nats_url
        self._name = name
        self._loop: WriterLoop | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is not None:
            return
        from apiary._private.logs import configure_logging

        configure_logging(self._settings)
        nc = await connect(self._nats_url, name=self._name)
        self._nc = nc
        self._loop = WriterLoop(
            js=nc.jetstream(),
            store=store_client(self._settings),
            objects=object_store(self._settings),
            settings=self._settings,
            name=self._name,
        )
        self._task = asyncio.create_task(self._loop.run())

    async def stats(self) -> dict[str, Any]:
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
        """Drain: stop fetching, store and acknowledge everything held, then disconnect."""
        if self._loop is not None and self._task is not None:
            self._loop.stop()
            await asyncio.gather(self._task, return_exceptions=True)
            await self._nc.drain()
        return await self.stats()


class WriterPool:
    """Starts and stops the named writer actors ``apiary-writer-<i>``."""

    def __init__(self, settings: ApiarySettings, nats_url: str, **actor_options: Any) -> None:
        self._settings = settings
        self._nats_url = nats_url
        self._options = actor_options
        self.writers: list[Any] = []

    def start(self, count: int | None = None) -> None:
        count = count or self._settings.writer_count
        for i in range(count):
            name = f"apiary-writer-{i}"
            writer = EventWriter.options(  # type: ignore[attr-defined]
                name=name, namespace=NAMESPACE, **{"num_cpus": 0, **self._options},
            ).remote(self._settings, self._nats_url, name)
            self.writers.append(writer)
        ray.get([w.start.remote() for w in self.writers])

    def ensure_running(self) -> None:
        """Start any writer Ray restarted after a crash (``start`` is idempotent)."""
        ray.get([w.start.remote() for w in self.writers])

    def stats(self) -> list[dict[str, Any]]:
        return list(ray.get([w.stats.remote() for w in self.writers]))

    def stop(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        if self.writers:
            results = list(ray.get([w.stop.remote() for w in self.writers], timeout=timeout))
            for w in self.writers:
                ray.kill(w, no_restart=True)
        self.writers = []
        return results
