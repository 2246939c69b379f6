"""RateLimiter and Cache: one suite, run against the in-process and the Redis driver."""

from __future__ import annotations

import asyncio

import pytest
from _servers import free_port
from redis.asyncio import Redis

from apiary.errors import ConfigurationError, RateLimited
from apiary.ratelimit import (
    Cache,
    MemoryCache,
    MemoryRateLimiter,
    RateLimiter,
    RedisCache,
    RedisRateLimiter,
    TtlLru,
    admit,
    cache,
    ingest_rate_limiter,
    open_redis,
    rate_limiter,
)
from apiary.settings import ApiarySettings, load_settings


def _limiter(
    driver: str, redis_client: Redis, namespace: str, rate_per_s: float, burst: int
) -> RateLimiter:
    return rate_limiter(
        redis_client if driver == "redis" else None,
        namespace=namespace, rate_per_s=rate_per_s, burst=burst,
    )


def _cache(driver: str, redis_client: Redis, namespace: str) -> Cache:
    return cache(redis_client if driver == "redis" else None, namespace=namespace)


# --- rate limits -----------------------------------------------------------------------


async def test_a_burst_passes_then_the_next_hit_is_refused(
    driver: str, redis_client: Redis, namespace: str
) -> None:
    limiter = _limiter(driver, redis_client, namespace, rate_per_s=2, burst=5)
    decisions = [await limiter.hit("key-a") for _ in range(5)]
    assert [d.allowed for d in decisions] == [True] * 5
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0]
    refused = await limiter.hit("key-a")
    assert not refused.allowed
    assert refused.remaining == 0
    # One token comes back every 0.5 s; a little has trickled in since the burst.
    assert 0.3 < refused.retry_after <= 0.5


async def test_tokens_come_back_at_the_configured_rate(
    driver: str, redis_client: Redis, namespace: str
) -> None:
    limiter = _limiter(driver, redis_client, namespace, rate_per_s=4, burst=2)
    assert (await limiter.hit("k", cost=2)).allowed
    assert not (await limiter.hit("k")).allowed
    await asyncio.sleep(0.3)  # 1.2 tokens at 4/s
    assert (await limiter.hit("k")).allowed
    assert not (await limiter.hit("k")).allowed


async def test_keys_have_separate_buckets(
    driver: str, redis_client: Redis, namespace: str
) -> None:
    limiter = _limiter(driver, redis_client, namespace, rate_per_s=0.01, burst=1)
    assert (await limiter.hit("a")).allowed
    assert not (await limiter.hit("a")).allowed
    assert (await limiter.hit("b")).allowed


async def test_costs_are_spent_and_a_refused_hit_spends_nothing(
    driver: str, redis_client: Redis, namespace: str
) -> None:
    limiter = _limiter(driver, redis_client, namespace, rate_per_s=0.01, burst=5)
    assert (await limiter.hit("k", cost=3)).remaining == 2
    refused = await limiter.hit("k", cost=3)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(100, rel=0.01)  # 1 token at 0.01/s
    assert (await limiter.hit("k", cost=2)).allowed


async def test_impossible_costs_are_rejected(
    driver: str, redis_client: Redis, namespace: str
) -> None:
    limiter = _limiter(driver, redis_client, namespace, rate_per_s=1, burst=5)
    for cost in (0, -1, 6):
        with pytest.raises(ValueError, match="cost"):
            await limiter.hit("k", cost=cost)


async def test_concurrent_hits_never_overspend(
    driver: str, redis_client: Redis, namespace: str
) -> None:
    limiter = _limiter(driver, redis_client, namespace, rate_per_s=0.001, burst=20)
    decisions = await asyncio.gather(*(limiter.hit("k") for _ in range(60)))
    assert sum(d.allowed for d in decisions) == 20


async def test_admit_raises_a_429_with_retry_after(
    driver: str, redis_client: Redis, namespace: str
) -> None:
    limiter = _limiter(driver, redis_client, namespace, rate_per_s=1, burst=1)
    assert (await admit(limiter, "k")).allowed
    with pytest.raises(RateLimited) as caught:
        await admit(limiter, "k")
    assert caught.value.status == 429
    assert 0 < caught.value.retry_after <= 1
    assert caught.value.to_body()["details"]["retry_after"] == caught.value.retry_after


async def test_redis_buckets_are_shared_between_limiters_and_expire(
    redis_url: str, redis_client: Redis, namespace: str
) -> None:
    # Two replicas, two connections, one bucket.
    other: Redis = Redis.from_url(redis_url)
    first = RedisRateLimiter(redis_client, 1, 3, prefix=f"{namespace}:")
    second = RedisRateLimiter(other, 1, 3, prefix=f"{namespace}:")
    assert [(await r.hit("k")).allowed for r in (first, second, first, second)] == [
        True, True, True, False,
    ]
    ttl_ms = await redis_client.pttl(f"{namespace}:k")
    assert 0 < ttl_ms <= 3 * 1000 + 1000  # gone once the bucket would be full again
    await other.aclose()


async def test_the_redis_limiter_fails_open_and_the_cache_misses_when_redis_is_down(
) -> None:
    dead: Redis = Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5
    )
    limiter = RedisRateLimiter(dead, 1, 1)
    assert all([(await limiter.hit("k")).allowed for _ in range(3)])
    store = RedisCache(dead)
    await store.set("k", b"v", 10)
    assert await store.get("k") is None
    await store.delete("k")
    await dead.aclose()


# --- caches ----------------------------------------------------------------------------


async def test_cache_set_get_overwrite_delete(
    driver: str, redis_client: Redis, namespace: str
) -> None:
    store = _cache(driver, redis_client, namespace)
    assert await store.get("missing") is None
    await store.set("k", b"one", 10)
    assert await store.get("k") == b"one"
    await store.set("k", b"two", 10)
    assert await store.get("k") == b"two"
    await store.delete("k")
    assert await store.get("k") is None
    await store.set("k", b"three", 10)
    await store.set("k", b"ignored", 0)  # a ttl of zero deletes
    assert await store.get("k") is None


async def test_cache_entries_expire(driver: str, redis_client: Redis, namespace: str) -> None:
    store = _cache(driver, redis_client, namespace)
    await store.set("short", b"x", 0.2)
    await store.set("long", b"y", 10)
    assert await store.get("short") == b"x"
    await asyncio.sleep(0.3)
    assert await store.get("short") is None
    assert await store.get("long") == b"y"


async def test_caches_in_different_namespaces_do_not_collide(
    driver: str, redis_client: Redis, namespace: str
) -> None:
    one = _cache(driver, redis_client, namespace + "-1")
    two = _cache(driver, redis_client, namespace + "-2")
    await one.set("k", b"1", 10)
    assert await two.get("k") is None


# --- in-process bounds and the factory -------------------------------------------------


def test_ttl_lru_evicts_least_recently_used_and_expires() -> None:
    now = [0.0]
    lru: TtlLru[str, int] = TtlLru(2, clock=lambda: now[0])
    lru.set("a", 1, 10)
    lru.set("b", 2, 10)
    assert lru.get("a") == 1  # "b" is now the least recently used
    lru.set("c", 3, 10)
    assert (lru.get("a"), lru.get("b"), lru.get("c")) == (1, None, 3)
    now[0] = 10.0
    assert lru.get("a") is None
    assert len(lru) == 1


async def test_in_process_drivers_are_bounded() -> None:
    limiter = MemoryRateLimiter(0.001, 1, max_keys=10)
    for i in range(100):
        await limiter.hit(f"k{i}")
    assert len(limiter._buckets) == 10
    store = MemoryCache(max_entries=3)
    for i in range(5):
        await store.set(f"k{i}", b"v", 10)
    assert [await store.get(f"k{i}") for i in range(5)] == [None, None, b"v", b"v", b"v"]


async def test_settings_choose_the_driver(redis_url: str) -> None:
    embedded = ApiarySettings(ingest_rate_limit_per_s=7, ingest_rate_limit_burst=9)
    assert open_redis(embedded) is None
    limiter = ingest_rate_limiter(embedded, None)
    assert isinstance(limiter, MemoryRateLimiter)
    assert (limiter.rate_per_s, limiter.burst) == (7, 9)
    assert isinstance(cache(None, namespace="x"), MemoryCache)

    shared = ApiarySettings(redis_url=redis_url)
    client = open_redis(shared)
    assert client is not None
    assert await client.ping()
    assert isinstance(ingest_rate_limiter(shared, client), RedisRateLimiter)
    assert isinstance(cache(client, namespace="x"), RedisCache)
    await client.aclose()


def test_a_redis_url_must_be_a_redis_url() -> None:
    with pytest.raises(ConfigurationError, match="APIARY_REDIS_URL"):
        load_settings(redis_url="http://redis:6379")
    assert load_settings(redis_url="rediss://redis:6380/1").redis_url == "rediss://redis:6380/1"
