"""Redis drivers: state shared by every replica, for production.

The rate limiter runs one Lua script per hit, so reading, refilling and spending a bucket
is atomic across all replicas, and it uses the Redis server's clock, so replicas with
skewed clocks agree. Bucket keys expire once the bucket would be full again. Needs
Redis 5 or newer (scripts replicated by effects).

Redis unreachable or failing does not fail requests: the rate limiter then admits (fail
open) and the cache misses, each logged at most every ``_WARN_EVERY_S``. A rate limit is
protection against abuse, not a correctness guarantee; refusing all traffic because Redis
blinked would be the larger outage.
"""

from __future__ import annotations

import logging
import math
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from apiary.ratelimit._interface import Decision, check_cost

log = logging.getLogger(__name__)

_WARN_EVERY_S = 10.0

# KEYS[1] bucket; ARGV rate_per_s, burst, cost. Returns {allowed, remaining, retry_after}.
# Floats are returned as strings: Redis truncates Lua numbers to integers.
_TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
else
  local elapsed = now - at
  if elapsed < 0 then elapsed = 0 end
  tokens = math.min(burst, tokens + elapsed * rate)
end
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
           'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, math.floor(tokens), string.format('%.6f', retry)}
"""


class _Warner:
    def __init__(self) -> None:
        self._last = -math.inf

    def warn(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last >= _WARN_EVERY_S:
            self._last = now
            log.warning("Redis failed during %s (%s: %s); continuing without it",
                        what, type(exc).__name__, exc)


class RedisRateLimiter:
    """Token buckets per key in Redis, under ``{prefix}{key}``; fails open."""

    def __init__(
        self, client: Redis, rate_per_s: float, burst: int, *, prefix: str = "apiary:rl:"
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.prefix = prefix
        self._script = client.register_script(_TOKEN_BUCKET)
        self._warner = _Warner()

    async def hit(self, key: str, cost: int = 1) -> Decision:
        check_cost(cost, self.burst)
        try:
            allowed, remaining, retry = await self._script(
                keys=[self.prefix + key], args=[repr(self.rate_per_s), self.burst, cost]
            )
        except (RedisError, OSError) as exc:
            self._warner.warn("a rate-limit hit", exc)
            return Decision(True, self.burst - cost, 0.0)
        return Decision(bool(allowed), int(remaining), float(retry))


class RedisCache:
    """Bytes in Redis under ``{prefix}{key}`` with a per-entry TTL; misses when Redis fails."""

    def __init__(self, client: Redis, *, prefix: str = "apiary:cache:") -> None:
        self._client = client
        self.prefix = prefix
        self._warner = _Warner()

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._client.get(self.prefix + key)
        except (RedisError, OSError) as exc:
            self._warner.warn("a cache read", exc)
            return None
        if value is None or isinstance(value, bytes):
            return value
        # A client made with decode_responses=True hands back str.
        return str(value).encode()

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            if ttl_s <= 0:
                await self._client.delete(self.prefix + key)
            else:
                await self._client.set(self.prefix + key, value, px=max(1, math.ceil(ttl_s * 1000)))
        except (RedisError, OSError) as exc:
            self._warner.warn("a cache write", exc)

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete(self.prefix + key)
        except (RedisError, OSError) as exc:
            self._warner.warn("a cache delete", exc)
