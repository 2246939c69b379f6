"""Evaluator actors: the pool that scores events from the ``evaluation`` stream.

Each :class:`EvaluatorActor` runs one
:class:`~apiary.dataplane.evaluation.service.EvaluatorService` (the loop, the scorer, stats
and drain live there). The pool is sized by a :class:`~apiary.actors.scaler.PoolScaler`;
on a cluster each actor requests CPUs and one unit of the custom resource ``evaluator``,
so a growing pool makes the Ray autoscaler add evaluator nodes.
"""

from __future__ import annotations

from typing import Any

import ray

from apiary.dataplane.evaluation.service import EvaluatorService
from apiary.settings import ApiarySettings


@ray.remote(max_restarts=-1, max_task_retries=0)
class EvaluatorActor:
    """One evaluator. Restarted by Ray if it dies; JetStream redelivers what it held."""

    def __init__(self, settings: ApiarySettings, nats_url: str, name: str) -> None:
        self._service = EvaluatorService(settings, nats_url, name)

    async def start(self) -> None:
        """Connect and start consuming (idempotent: a restarted actor starts again)."""
        await self._service.start()

    async def ensure_running(self) -> None:
        await self._service.ensure_running()

    async def stats(self) -> dict[str, Any]:
        return await self._service.stats()

    async def stop(self) -> dict[str, Any]:
        """Drain: finish and acknowledge the tasks held, then disconnect."""
        return await self._service.stop()


__all__ = ["EvaluatorActor"]
