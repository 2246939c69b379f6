"""Pools that follow their queue (docs/architecture.md, "Pools that follow the queue").

- :mod:`~apiary.dataplane.scaling.policy`: how many actors a pool should have, from its
  JetStream consumer's backlog (pending + ack-pending), within bounds, with up and down
  delays; the evaluators' and writers' policies from the settings.
- :mod:`~apiary.dataplane.scaling.pool`: a resizable pool of named Ray actors that grows in
  the background (an actor may wait for the autoscaler to add a node) and shrinks by draining.
- :mod:`~apiary.dataplane.scaling.scaler`: the control loop that ties a pool to its consumer
  (:class:`BacklogScaler`); the Ray actor that runs it is
  :class:`apiary.actors.scaler.PoolScaler`.
"""

from apiary.dataplane.scaling.policy import (
    Hysteresis,
    ScalingPolicy,
    evaluator_policy,
    writer_policy,
)
from apiary.dataplane.scaling.pool import ActorPool
from apiary.dataplane.scaling.scaler import (
    EVALUATORS,
    POOL_KINDS,
    WRITERS,
    BacklogScaler,
    PoolKind,
)

__all__ = [
    "EVALUATORS",
    "POOL_KINDS",
    "WRITERS",
    "ActorPool",
    "BacklogScaler",
    "Hysteresis",
    "PoolKind",
    "ScalingPolicy",
    "evaluator_policy",
    "writer_policy",
]
