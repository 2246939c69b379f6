"""A data-plane replica's context (apiary.dataplane.replica.context) against a real
nats-server."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from apiary.dataplane.auth import ApiKeyAuthenticator
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.queue import NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore


async def test_a_replica_closes_while_nats_is_down(
    store: EventStore, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Closing drains the NATS connection; with nats-server gone (``kill -9``) the drain
    cannot run, and the replica must stop anyway (it used to raise
    ConnectionReconnectingError out of ``close``)."""
    nats = NatsServer(tmp_path_factory.mktemp("context-nats"))
    url = nats.start()
    settings = ApiarySettings(data_dir=tmp_path_factory.mktemp("context-plane"))
    try:
        nc = await connect(url, name="context-setup")
        await ensure_topology(nc.jetstream(), settings)
        await nc.close()
        context = await DataPlaneContext.open(settings, url, ApiKeyAuthenticator([]),
                                              store=DirectStoreClient(store))
        assert nats.pid is not None
        os.kill(nats.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while context.nc.is_connected:
            assert time.monotonic() < deadline, "the replica never saw NATS go"
            await asyncio.sleep(0.02)
        await asyncio.wait_for(context.close(), timeout=10)
        assert context.nc.is_closed
    finally:
        nats.stop()
