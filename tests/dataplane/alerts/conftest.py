"""Fixtures of the alert tests: real webhook receivers and a NATS connection to the
session's nats-server (the chDB ``store`` is the session's)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from _notification_receivers import Receivers, receivers
from nats.aio.client import Client

from apiary.queue import NatsServer, connect


@pytest.fixture(scope="module")
def hub() -> Iterator[Receivers]:
    with receivers() as started:
        yield started


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await connect(nats_server.url, name="alerts-test")
    yield client
    await client.close()
