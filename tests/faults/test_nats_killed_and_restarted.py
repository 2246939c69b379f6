"""Fault 4: nats-server killed with ``kill -9`` mid-stream and, 3 s later, restarted on the
same store directory and port (:meth:`NatsServer.restart`), under a steady OTLP/HTTP
stream into the real data-plane app (tests/faults/_ray_pipeline.py).

While the server is down the data plane's connection is reconnecting: a publish is refused
at once (503 with ``Retry-After``), never parked in the client's reconnect buffer, and
never answered 200 (a 200 is only sent once JetStream acknowledged, fsync'ed, the spans).
Clients (the data plane, the writers) reconnect by themselves to the same URL. After it
every span answered 200 is stored exactly once (JetStream kept every message it had
acknowledged), nothing is dead-lettered, the session rollups equal the sums over
``FINAL``, the ingest accounting is exact, and ingestion answers 200 again.

The bug this caught: acks were sent fire-and-forget, and a server killed with them unread
(its consumer's delivered state lost too) sent those messages again as *first* deliveries,
which the writer did not check: stored twice under another deduplication token, the
session rollups counted them twice. Acks now wait for the server's reply, and the writer
checks first deliveries it may have stored (apiary/dataplane/writer/_loop.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import pytest
from _ray_pipeline import (
    RayPipeline,
    assert_kept_exactly_once,
    assert_only_200_or_503,
    under_stream,
)
from _report import FaultReport

pytestmark = pytest.mark.ray

#: How long a request waits for JetStream before it is answered 503 (the plane's setting).
PUBLISH_TIMEOUT_S = 5.0
DOWN_S = 3.0


async def test_nats_server_killed_and_restarted_on_its_store_loses_nothing(
        ray_pipeline: RayPipeline, fault_report: FaultReport) -> None:
    pipeline = ray_pipeline
    url = pipeline.nats.url

    async def kill_and_restart() -> None:
        pid = pipeline.nats.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(DOWN_S)  # the fault itself: the server down this long
        assert await asyncio.to_thread(pipeline.nats.restart) == url  # same port and store

    async with pipeline.http_ingest(f"proj-{uuid.uuid4().hex[:12]}",
                                    ingest_publish_timeout_s=PUBLISH_TIMEOUT_S) as ingest:
        began, ended = await under_stream(pipeline, ingest, kill_and_restart)
        tally = await pipeline.settle(ingest, wait_s=120)
    refused = assert_only_200_or_503(ingest, began, ended, PUBLISH_TIMEOUT_S)
    assert refused, "no request was refused while nats-server was down"
    # Refused at once while the connection was down: only the requests in flight at the
    # kill waited for their publish timeout.
    assert sum(1 for a in refused if a.seconds < 1.0) >= len(refused) - 3
    assert_kept_exactly_once(ingest, tally, await pipeline.diagnosis())
    writer = pipeline.writer()
    assert writer["running"] is True
    # The writer saw its connection come back, and from then on checked first deliveries
    # the restarted server may have sent again (its delivered state can be lost with it).
    assert writer["reconnects_seen"] >= 1, writer
    fault_report.record("4. nats-server kill -9, restarted on its store", tally.accepted,
                        tally.stored, tally.dead_lettered, tally.duplicates,
                        tally.settled_at - ended)
