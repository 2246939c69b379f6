"""Notifier actors: the pool that delivers the ``notifications`` stream.

Each :class:`NotifierActor` runs one
:class:`~apiary.dataplane.notifications.service.NotifierService` (the loop, its retries,
stats and stop live there). :class:`NotifierPool` starts, inspects and stops the named
notifiers ``apiary-notifier-<i>`` (``APIARY_NOTIFIER_COUNT`` of them) on the shared durable
consumer ``notifications/notifiers``.
"""

from __future__ import annotations

from typing import Any

import ray

from apiary.dataplane.notifications.service import NotifierService
from apiary.settings import ApiarySettings

NAMESPACE = "apiary"


@ray.remote(max_restarts=-1, max_task_retries=0)
class NotifierActor:
    """One notifier. Restarted by Ray if it dies; JetStream redelivers what it held, and
    the delivery records keep finished channels from receiving it again."""

    def __init__(self, settings: ApiarySettings, nats_url: str, name: str) -> None:
        self._service = NotifierService(settings, nats_url, name)

    async def start(self) -> None:
        """Connect and start the supervised loop (idempotent: a restarted actor starts
        again)."""
        await self._service.start()

    async def ensure_running(self) -> None:
        await self._service.ensure_running()

    async def stats(self) -> dict[str, Any]:
        return await self._service.stats()

    async def stop(self) -> dict[str, Any]:
        """Hand back what is held (another notifier goes on with it), then disconnect."""
        return await self._service.stop()


class NotifierPool:
    """Starts and stops the named notifier actors ``apiary-notifier-<i>``."""

    def __init__(self, settings: ApiarySettings, nats_url: str, **actor_options: Any) -> None:
        self._settings = settings
        self._nats_url = nats_url
        self._options = actor_options
        self.notifiers: list[Any] = []

    def start(self, count: int | None = None) -> None:
        """Start ``count`` (default ``notifier_count``) notifiers; returns once each has."""
        count = self._settings.notifier_count if count is None else count
        for i in range(count):
            name = f"apiary-notifier-{i}"
            notifier = NotifierActor.options(  # type: ignore[attr-defined]
                name=name, namespace=NAMESPACE, **{"num_cpus": 0, **self._options},
            ).remote(self._settings, self._nats_url, name)
            self.notifiers.append(notifier)
        ray.get([n.start.remote() for n in self.notifiers])

    def ensure_running(self) -> list[str]:
        """Start any notifier Ray restarted after a crash, or whose loop's supervisor ended.
        One line per notifier that cannot be reached now (the next call starts it)."""
        skipped: list[str] = []
        refs = [n.ensure_running.remote() for n in self.notifiers]
        for i, ref in enumerate(refs):
            try:
                ray.get(ref, timeout=60)
            except Exception as exc:  # a dead or restarting actor: try again next round
                skipped.append(f"apiary-notifier-{i}: {exc!r}")
        return skipped

    def stats(self) -> list[dict[str, Any]]:
        return list(ray.get([n.stats.remote() for n in self.notifiers]))

    def stop(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        if self.notifiers:
            results = list(ray.get([n.stop.remote() for n in self.notifiers], timeout=timeout))
            for n in self.notifiers:
                ray.kill(n, no_restart=True)
        self.notifiers = []
        return results


__all__ = ["NotifierActor", "NotifierPool"]
