"""Choosing the driver from the settings: Redis if ``redis_url`` is set, else in-process."""

from __future__ import annotations

from redis.asyncio import Redis

from apiary.ratelimit._interface import Cache, RateLimiter
from apiary.ratelimit._memory import MemoryCache, MemoryRateLimiter
from apiary.ratelimit._redis import RedisCache, RedisRateLimiter
from apiary.settings import ApiarySettings

# Tight timeouts: a rate-limit check sits on every request's path, and a slow Redis must
# degrade to "no limit" quickly rather than stall ingestion.
_REDIS_TIMEOUT_S = 0.5


def open_redis(settings: ApiarySettings) -> Redis | None:
    """A Redis client for ``settings.redis_url`` (connecting lazily), or None if unset.

    The caller owns it and closes it with ``await client.aclose()``.
    """
    if settings.redis_url is None:
        return None
    client: Redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=_REDIS_TIMEOUT_S,
        socket_connect_timeout=_REDIS_TIMEOUT_S,
        health_check_interval=30,
    )
    return client


def rate_limiter(
    redis: Redis | None, *, namespace: str, rate_per_s: float, burst: int
) -> RateLimiter:
    """A token bucket per key; ``namespace`` keeps different limits' keys apart in Redis."""
    if redis is None:
        return MemoryRateLimiter(rate_per_s, burst)
    return RedisRateLimiter(redis, rate_per_s, burst, prefix=f"apiary:rl:{namespace}:")


def ingest_rate_limiter(settings: ApiarySettings, redis: Redis | None) -> RateLimiter:
    """The per-credential limit on ingestion requests (``ingest_rate_limit_*`` settings)."""
    return rate_limiter(
        redis,
        namespace="ingest",
        rate_per_s=settings.ingest_rate_limit_per_s,
        burst=settings.ingest_rate_limit_burst,
    )


def cache(redis: Redis | None, *, namespace: str, max_entries: int = 100_000) -> Cache:
    """A TTL cache; ``max_entries`` bounds the in-process driver (Redis has its own policy)."""
    if redis is None:
        return MemoryCache(max_entries=max_entries)
    return RedisCache(redis, prefix=f"apiary:cache:{namespace}:")
