"""The data plane's federation controller as a Ray actor (docs/architecture.md,
"Federation"): one per data plane, named :data:`DP_CONTROLLER_NAME`, restarted by Ray if its
process dies (``max_restarts=-1``); the start-up supervisor calls :meth:`ensure_running`
after a restart, like the writers'. All the work is in
:class:`apiary.dataplane.federation.controller.ControllerService`."""

from __future__ import annotations

from typing import Any

import ray

from apiary.dataplane.federation.controller import ControllerService
from apiary.settings import ApiarySettings

DP_CONTROLLER_NAME = "apiary-dp-controller"


@ray.remote(max_restarts=-1, max_task_retries=0)
class DataPlaneControllerActor:
    """Keeps the federation stream to the control plane (dial, apply, health, commands)."""

    def __init__(self, settings: ApiarySettings, nats_url: str) -> None:
        from apiary.store import store_client

        self._service = ControllerService(
            settings, nats_url, store_factory=lambda: store_client(settings))

    async def start(self) -> None:
        """Start the supervised controller; idempotent."""
        from apiary._private.logs import configure_logging

        configure_logging(self._service.controller.settings)
        await self._service.start()

    async def ensure_running(self) -> None:
        await self._service.ensure_running()

    async def status(self) -> dict[str, Any]:
        return self._service.status()

    async def stop(self) -> None:
        await self._service.stop()


__all__ = ["DP_CONTROLLER_NAME", "DataPlaneControllerActor"]
