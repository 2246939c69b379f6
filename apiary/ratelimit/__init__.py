"""Rate limits and caches through one interface, Redis or in-process.

:class:`RateLimiter` (token bucket per key, :func:`admit` turns a refusal into a 429) and
:class:`Cache` (bytes with a TTL), each with a Redis driver (shared by all replicas; atomic
via a Lua script) and an in-process driver (the embedded default). :func:`open_redis`,
:func:`rate_limiter`, :func:`ingest_rate_limiter` and :func:`cache` pick the driver from the
settings: ``redis_url`` set selects Redis.
"""

from apiary.ratelimit._factory import cache, ingest_rate_limiter, open_redis, rate_limiter
from apiary.ratelimit._interface import Cache, Decision, RateLimiter, admit
from apiary.ratelimit._lru import TtlLru
from apiary.ratelimit._memory import MemoryCache, MemoryRateLimiter
from apiary.ratelimit._redis import RedisCache, RedisRateLimiter

__all__ = [
    "Cache",
    "Decision",
    "MemoryCache",
    "MemoryRateLimiter",
    "RateLimiter",
    "RedisCache",
    "RedisRateLimiter",
    "TtlLru",
    "admit",
    "cache",
    "ingest_rate_limiter",
    "open_redis",
    "rate_limiter",
]
