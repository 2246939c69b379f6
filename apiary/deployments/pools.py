"""The pools of a data-plane cluster as a Ray Serve deployment with no HTTP route.

:class:`PoolSupervisor` is handed the start-up sequence (:class:`Pools`; the cluster passes
:class:`apiary.startup.sequence.DataPlaneServices`) and runs it: the stores are prepared in
the constructor (a replica that cannot reach them fails to start), the pools start in the
background (writers may wait for the autoscaler to add a node), and every 10 s whatever Ray
restarted is started again. One replica per cluster: the pools are its children, so if it
dies they die with it and JetStream redelivers what they held; on a graceful stop they drain,
evaluators before writers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from ray import serve

from apiary.settings import ApiarySettings

log = logging.getLogger(__name__)
#: Seconds between two supervision rounds.
SUPERVISE_INTERVAL_S = 10.0


class Pools(Protocol):
    """The start-up sequence a supervisor runs (:mod:`apiary.startup.sequence`)."""

    settings: ApiarySettings

    async def prepare(self) -> None: ...
    def start(self) -> None: ...
    def ensure_running(self) -> None: ...
    def stop(self) -> list[str]: ...


class PoolSupervisor:
    """One replica: stores prepared in the constructor, the pools run by a background task."""

    # Serve awaits an async constructor; mypy only knows synchronous ones.
    async def __init__(self, pools: Pools) -> None:  # type: ignore[misc]
        from apiary._private.logs import configure_logging

        configure_logging(pools.settings)
        await pools.prepare()
        self._pools = pools
        self._task = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        await asyncio.to_thread(self._pools.start)
        while True:
            await asyncio.sleep(SUPERVISE_INTERVAL_S)
            try:
                await asyncio.to_thread(self._pools.ensure_running)
            except Exception as exc:  # keep supervising; Ray restarts writers itself
                log.warning("writer supervision failed: %s", exc)

    async def check_health(self) -> None:
        if self._task.done():
            self._task.result()  # re-raises why the pools could not start
            raise RuntimeError("the writer pool supervisor stopped")

    async def __del__(self) -> None:
        task = getattr(self, "_task", None)
        if task is not None:
            task.cancel()
            for error in await asyncio.to_thread(self._pools.stop):
                log.warning("stopping the pools: %s", error)


def pools_app(pools: Pools) -> Any:
    """The bound Serve application of one :class:`PoolSupervisor` (no HTTP route)."""
    deployment = serve.deployment(
        PoolSupervisor,
        name="PoolSupervisor",
        num_replicas=1,
        ray_actor_options={"num_cpus": 0},
        health_check_period_s=10,
        # Writers store and acknowledge what they hold before the replica exits.
        graceful_shutdown_timeout_s=120,
    )
    return deployment.bind(pools)  # type: ignore[attr-defined]  # Deployment at runtime
