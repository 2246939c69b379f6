"""Fixtures: every rate-limit and cache test runs against both drivers.

The Redis driver talks to a real redis-server started for the session (tests/_servers.py);
each test gets its own key namespace, so tests do not see each other's buckets.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from _servers import redis_server as start_redis_server
from redis.asyncio import Redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with start_redis_server() as url:
        yield url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["memory", "redis"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)
