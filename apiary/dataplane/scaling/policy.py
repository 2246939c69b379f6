"""How many actors a pool should have, from its queue depth, with hysteresis.

The signal is the pool's JetStream consumer backlog: messages pending (not yet delivered)
plus acknowledgement-pending (delivered, being worked on). A pool wants
``ceil(backlog / backlog_per_actor)`` actors, clamped to ``[min_size, max_size]``.

Hysteresis, as Kubernetes' HPA stabilization windows do it: the pool grows only to the
**least** size it wanted during the last ``up_delay_s`` seconds, and shrinks only to the
**most** size it wanted during the last ``down_delay_s`` seconds. So a burst shorter than
the up delay never adds actors, a short lull never removes them, and a size is only
reached after it was wanted continuously for the delay. Right after start, until a full
window of observations exists, it does not move in that direction at all.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from apiary.errors import ConfigurationError
from apiary.settings import ApiarySettings


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    min_size: int
    max_size: int
    backlog_per_actor: int
    up_delay_s: float
    down_delay_s: float

    def __post_init__(self) -> None:
        if self.min_size < 0 or self.max_size < max(self.min_size, 1):
            raise ConfigurationError(
                f"pool bounds must satisfy 0 <= min <= max and max >= 1 "
                f"(min {self.min_size}, max {self.max_size})")
        if self.backlog_per_actor < 1 or self.up_delay_s < 0 or self.down_delay_s < 0:
            raise ConfigurationError("backlog per actor must be >= 1 and delays >= 0")

    def wanted(self, backlog: int) -> int:
        """The size ``backlog`` asks for, within the bounds."""
        size = math.ceil(max(backlog, 0) / self.backlog_per_actor)
        return max(self.min_size, min(self.max_size, size))


class Hysteresis:
    """Turns a stream of (time, backlog) observations into size decisions (module doc)."""

    def __init__(self, policy: ScalingPolicy, *, started_at: float) -> None:
        self.policy = policy
        self._started_at = started_at
        self._seen: deque[tuple[float, int]] = deque()

    def decide(self, now: float, backlog: int, current: int) -> int:
        """The size to have now; ``current`` is what the pool has (or is getting)."""
        policy = self.policy
        wanted = policy.wanted(backlog)
        self._seen.append((now, wanted))
        horizon = now - max(policy.up_delay_s, policy.down_delay_s)
        while self._seen and self._seen[0][0] < horizon:
            self._seen.popleft()
        current_clamped = max(policy.min_size, min(policy.max_size, current))
        if current_clamped != current:
            return current_clamped  # bounds changed: obey them at once
        if wanted > current:
            if now - self._started_at < policy.up_delay_s:
                return current
            window = [w for t, w in self._seen if t >= now - policy.up_delay_s]
            return max(current, min(window))
        if wanted < current:
            if now - self._started_at < policy.down_delay_s:
                return current
            window = [w for t, w in self._seen if t >= now - policy.down_delay_s]
            return min(current, max(window))
        return current


def evaluator_policy(settings: ApiarySettings) -> ScalingPolicy:
    """The evaluators' policy: ``APIARY_EVALUATOR_MIN`` to ``APIARY_EVALUATOR_MAX`` actors."""
    if settings.evaluator_max < settings.evaluator_min:
        raise ConfigurationError("APIARY_EVALUATOR_MAX must be at least APIARY_EVALUATOR_MIN")
    return ScalingPolicy(settings.evaluator_min, settings.evaluator_max,
                         settings.evaluator_backlog_per_actor, settings.scale_up_delay_s,
                         settings.scale_down_delay_s)


def writer_policy(settings: ApiarySettings) -> ScalingPolicy | None:
    """The writers' policy (``APIARY_WRITER_COUNT`` to ``APIARY_WRITER_MAX``), or None when
    the writer pool does not scale."""
    if settings.writer_max is None or settings.writer_max == settings.writer_count:
        return None
    if settings.writer_max < settings.writer_count:
        raise ConfigurationError("APIARY_WRITER_MAX must be at least APIARY_WRITER_COUNT")
    return ScalingPolicy(settings.writer_count, settings.writer_max,
                         settings.writer_backlog_per_actor, settings.scale_up_delay_s,
                         settings.scale_down_delay_s)


__all__ = ["Hysteresis", "ScalingPolicy", "evaluator_policy", "writer_policy"]
