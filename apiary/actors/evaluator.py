"""Evaluator actors: the pool that scores events from the ``evaluation`` stream.

Each :class:`EvaluatorActor` runs one
:class:`~apiary.dataplane.evaluation.service.EvaluatorService` (the loop, the scorer, stats
and drain live there). The pool is sized by a :class:`~apiary.actors.scaler.PoolScaler`;
on a cluster each actor requests CPUs and one unit of the custom resource ``evaluator``,
so a growing pool makes the Ray autoscaler add evaluator nodes.
"""

from __future__ import annotations

import ray

from apiary.actors._pool import ServiceActor
from apiary.dataplane.evaluation.service import EvaluatorService
from apiary.settings import ApiarySettings


@ray.remote(max_restarts=-1, max_task_retries=0)
class EvaluatorActor(ServiceActor):
    """One evaluator. Restarted by Ray if it dies; JetStream redelivers what it held.
    ``stop`` drains: finishes and acknowledges the tasks held, then disconnects."""

    def __init__(self, settings: ApiarySettings, nats_url: str, name: str) -> None:
        self._service = EvaluatorService(settings, nats_url, name)


__all__ = ["EvaluatorActor"]
