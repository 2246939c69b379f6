"""Writer actors: the pool that moves events from JetStream into ClickHouse.

Each :class:`EventWriter` runs one :class:`~apiary.dataplane.writer.WriterService` (the
loop, its stats and its drain live there). :class:`WriterPool` starts, inspects and stops
the named writers; stopping drains (each writer stores what it holds before it exits).
"""

from __future__ import annotations

from typing import Any

import ray

from apiary.dataplane.writer import WriterService
from apiary.settings import ApiarySettings

NAMESPACE = "apiary"


@ray.remote(max_restarts=-1, max_task_retries=0)
class EventWriter:
    """One writer. Restarted by Ray if it dies; JetStream redelivers what it held."""

    def __init__(self, settings: ApiarySettings, nats_url: str, name: str) -> None:
        self._service = WriterService(settings, nats_url, name)

    async def start(self) -> None:
        """Connect and start the supervised loop; starts it again if its task ended."""
        await self._service.start()

    async def ensure_running(self) -> None:
        await self._service.ensure_running()

    async def stats(self) -> dict[str, Any]:
        return await self._service.stats()

    async def stop(self) -> dict[str, Any]:
        return await self._service.stop()


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

    def ensure_running(self) -> list[str]:
        """Start any writer Ray restarted after a crash, or whose loop's supervisor ended
        (``start`` is idempotent). A writer that cannot be reached now (Ray is restarting
        it) is skipped: the next call starts it. Returns one line per writer skipped."""
        skipped: list[str] = []
        refs = [w.ensure_running.remote() for w in self.writers]
        for i, ref in enumerate(refs):
            try:
                ray.get(ref, timeout=60)
            except Exception as exc:  # a dead or restarting actor: try again next round
                skipped.append(f"apiary-writer-{i}: {exc!r}")
        return skipped

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


__all__ = ["EventWriter", "WriterPool"]
