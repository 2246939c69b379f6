"""Fixtures of the notification tests: real receivers (an HTTP server standing in for Slack
and webhook receivers, an SMTP server) and a NATS connection to the session's nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from _notification_receivers import Mailbox, Receivers, receivers, smtp_server
from nats.aio.client import Client

from apiary.queue import NatsServer, connect


@pytest.fixture(scope="module")
def hub() -> Iterator[Receivers]:
    with receivers() as started:
        yield started


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[str, Mailbox]]:
    with smtp_server() as started:
        yield started


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await connect(nats_server.url, name="notifications-test")
    yield client
    await client.close()
