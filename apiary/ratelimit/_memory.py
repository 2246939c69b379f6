"""In-process drivers: the embedded default, one state per replica.

Both are bounded in memory (least recently used keys are forgotten first). Forgetting a
rate-limit key is harmless: a bucket idle for ``burst / rate_per_s`` seconds is full
again, which is what a forgotten key starts as, and entries live no longer than that.
Safe within one event loop (each operation completes without awaiting).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from apiary.ratelimit._interface import Decision, check_cost
from apiary.ratelimit._lru import TtlLru


class MemoryRateLimiter:
    """Token buckets per key in this process."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: TtlLru[str, tuple[float, float]] = TtlLru(max_keys, clock=clock)

    async def hit(self, key: str, cost: int = 1) -> Decision:
        check_cost(cost, self.burst)
        now = self._clock()
        state = self._buckets.get(key)
        tokens = float(self.burst)
        if state is not None:
            held, at = state
            tokens = min(tokens, held + max(0.0, now - at) * self.rate_per_s)
        if tokens >= cost:
            tokens -= cost
            decision = Decision(True, math.floor(tokens), 0.0)
        else:
            decision = Decision(False, math.floor(tokens), (cost - tokens) / self.rate_per_s)
        # Kept until the bucket would be full again; after that, absent means the same.
        self._buckets.set(key, (tokens, now), (self.burst - tokens) / self.rate_per_s + 1e-3)
        return decision


class MemoryCache:
    """A bounded TTL cache of bytes in this process."""

    def __init__(
        self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: TtlLru[str, bytes] = TtlLru(max_entries, clock=clock)

    async def get(self, key: str) -> bytes | None:
        return self._entries.get(key)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._entries.set(key, value, ttl_s)

    async def delete(self, key: str) -> None:
        self._entries.pop(key)
