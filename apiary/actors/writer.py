"""Writer actors: the pool that moves events from JetStream into ClickHouse.

Each :class:`EventWriter` runs one :class:`~apiary.dataplane.writer.WriterService` (the
loop, its stats and its drain live there). :class:`WriterPool` starts, inspects and stops
the named writers; stopping drains (each writer stores what it holds before it exits).
"""

from __future__ import annotations

from typing import Any

import ray

from apiary.actors._pool import NAMESPACE as NAMESPACE
from apiary.actors._pool import NamedActorPool, ServiceActor
from apiary.dataplane.writer import WriterService
from apiary.settings import ApiarySettings


@ray.remote(max_restarts=-1, max_task_retries=0)
class EventWriter(ServiceActor):
    """One writer. Restarted by Ray if it dies; JetStream redelivers what it held. ``stop``
    drains: the writer stores and acknowledges what it holds before it exits."""

    def __init__(self, settings: ApiarySettings, nats_url: str, name: str) -> None:
        self._service = WriterService(settings, nats_url, name)


class WriterPool(NamedActorPool):
    """Starts and stops the named writer actors ``apiary-writer-<i>`` (:class:`EventWriter`);
    stopping drains each."""

    def __init__(self, settings: ApiarySettings, nats_url: str, **actor_options: Any) -> None:
        super().__init__(EventWriter, "apiary-writer", settings, nats_url, **actor_options)

    @property
    def writers(self) -> list[Any]:
        """The writer actors' handles, in the order they were started."""
        return self.actors

    def start(self, count: int | None = None) -> None:
        """Start ``count`` (default, and for 0: ``writer_count``) writers; returns once each
        has."""
        super().start(count or self._settings.writer_count)


__all__ = ["EventWriter", "WriterPool"]
