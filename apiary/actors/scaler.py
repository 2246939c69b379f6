"""Pool scalers: actors that size the writer and evaluator pools from queue depth.

One :class:`PoolScaler` per pool, each running one
:class:`~apiary.dataplane.scaling.BacklogScaler` (the policy, the control loop and the pool
live in :mod:`apiary.dataplane.scaling`). The scaler is restarted by Ray if it dies; its
actors die with it (they are its children) and JetStream redelivers what they held; the
supervisor calls :meth:`PoolScaler.ensure_running`, which starts it again.
"""

from __future__ import annotations

from typing import Any

import ray

from apiary.dataplane.scaling import (
    EVALUATORS,
    WRITERS,
    BacklogScaler,
    ScalingPolicy,
    evaluator_policy,
    writer_policy,
)
from apiary.settings import ApiarySettings


def _actor_class(kind: str) -> Any:
    if kind == EVALUATORS:
        from apiary.actors.evaluator import EvaluatorActor

        return EvaluatorActor
    from apiary.actors.writer import EventWriter

    return EventWriter


@ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0)
class PoolScaler:
    """Sizes one pool (``kind``: ``evaluators`` or ``writers``) on its consumer's backlog."""

    def __init__(self, kind: str, settings: ApiarySettings, nats_url: str,
                 policy: ScalingPolicy, actor_options: dict[str, Any], base: int = 0) -> None:
        self._scaler = BacklogScaler(kind, settings, nats_url, policy, actor_options,
                                     actor_class=_actor_class(kind), base=base)

    async def start(self) -> dict[str, Any]:
        return await self._scaler.start()

    async def tick(self) -> dict[str, Any]:
        return await self._scaler.tick()

    async def status(self, history: bool = False) -> dict[str, Any]:
        return await self._scaler.status(history)

    async def actor_stats(self) -> list[dict[str, Any]]:
        return await self._scaler.actor_stats()

    async def ensure_running(self) -> None:
        await self._scaler.ensure_running()

    async def stop(self) -> dict[str, Any]:
        return await self._scaler.stop()


def start_scalers(settings: ApiarySettings, nats_url: str, *,
                  evaluator_options: dict[str, Any],
                  writer_options: dict[str, Any]) -> list[Any]:
    """Create and start the evaluator scaler and, when the writers scale, the writer
    scaler; returns their handles (stop each with :func:`stop_scalers`)."""
    scalers = [PoolScaler.options(  # type: ignore[attr-defined]
        name=f"apiary-scaler-{EVALUATORS}", namespace="apiary").remote(
            EVALUATORS, settings, nats_url, evaluator_policy(settings), evaluator_options)]
    policy = writer_policy(settings)
    if policy is not None:
        scalers.append(PoolScaler.options(  # type: ignore[attr-defined]
            name=f"apiary-scaler-{WRITERS}", namespace="apiary").remote(
                WRITERS, settings, nats_url, policy, writer_options, settings.writer_count))
    ray.get([s.start.remote() for s in scalers])
    return scalers


def stop_scalers(scalers: list[Any], timeout: float = 180.0) -> list[dict[str, Any]]:
    """Drain the pools of ``scalers`` (evaluators first: their scores go to the writers)
    and kill the scalers."""
    results: list[dict[str, Any]] = []
    for scaler in scalers:
        try:
            results.append(ray.get(scaler.stop.remote(), timeout=timeout))
        finally:
            ray.kill(scaler, no_restart=True)
    return results


__all__ = ["PoolScaler", "start_scalers", "stop_scalers"]
