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

from apiary.actors._pool import NAMESPACE as NAMESPACE
from apiary.actors._pool import NamedActorPool, ServiceActor
from apiary.dataplane.notifications.service import NotifierService
from apiary.settings import ApiarySettings


@ray.remote(max_restarts=-1, max_task_retries=0)
class NotifierActor(ServiceActor):
    """One notifier. Restarted by Ray if it dies; JetStream redelivers what it held, and
    the delivery records keep finished channels from receiving it again. ``stop`` hands
    back what is held (another notifier goes on with it), then disconnects."""

    def __init__(self, settings: ApiarySettings, nats_url: str, name: str) -> None:
        self._service = NotifierService(settings, nats_url, name)


class NotifierPool(NamedActorPool):
    """Starts and stops the named notifier actors ``apiary-notifier-<i>``
    (:class:`NotifierActor`)."""

    def __init__(self, settings: ApiarySettings, nats_url: str, **actor_options: Any) -> None:
        super().__init__(NotifierActor, "apiary-notifier", settings, nats_url,
                         **actor_options)

    @property
    def notifiers(self) -> list[Any]:
        """The notifier actors' handles, in the order they were started."""
        return self.actors

    def start(self, count: int | None = None) -> None:
        """Start ``count`` (default ``notifier_count``) notifiers; returns once each has."""
        super().start(self._settings.notifier_count if count is None else count)


__all__ = ["NotifierActor", "NotifierPool"]
