"""Rate limits and caches: the interfaces every driver implements.

Two drivers each (docs/architecture.md, "Stores and their embedded defaults"): Redis, shared
by every replica, in production; in-process, per replica, as the embedded default. Callers
see only these protocols and cannot tell the drivers apart except by whether state is
shared.

Rate limits are token buckets per key: a key may spend ``burst`` requests at once, and
regains ``rate_per_s`` per second up to ``burst``. A refused hit spends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from apiary.errors import RateLimited


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one hit on a rate limit.

    ``allowed``: the hit was admitted (and its cost spent). ``remaining``: whole requests
    of cost 1 the key could still make right now. ``retry_after``: seconds until this hit
    would be admitted (0 when it was).
    """

    allowed: bool
    remaining: int
    retry_after: float


class RateLimiter(Protocol):
    """A token bucket per key, ``rate_per_s`` sustained and ``burst`` at once."""

    rate_per_s: float
    burst: int

    async def hit(self, key: str, cost: int = 1) -> Decision:
        """Spend ``cost`` from ``key``'s bucket if it holds that much; atomic per key.

        Raises ValueError if ``cost`` is below 1 or above ``burst`` (it could never pass).
        """
        ...


class Cache(Protocol):
    """Bytes by string key, each kept for its own time-to-live."""

    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None if it was never set, expired or was evicted."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Keep ``value`` for ``ttl_s`` seconds; a ttl of zero or less deletes ``key``."""
        ...

    async def delete(self, key: str) -> None: ...


async def admit(limiter: RateLimiter, key: str, cost: int = 1) -> Decision:
    """Hit ``limiter`` and raise :class:`~apiary.errors.RateLimited` (429) if refused."""
    decision = await limiter.hit(key, cost)
    if not decision.allowed:
        raise RateLimited(
            "too many requests for this credential; retry later",
            retry_after=round(max(decision.retry_after, 0.001), 3),
        )
    return decision


def check_cost(cost: int, burst: int) -> None:
    if cost < 1 or cost > burst:
        raise ValueError(f"cost must be between 1 and the burst ({burst}), not {cost}")
