"""Fault 3: nats-server frozen (SIGSTOP) for twice the writers' ``ack_wait``, then resumed
(SIGCONT), under a steady OTLP/HTTP stream into the real data-plane app
(tests/faults/_ray_pipeline.py).

While the server is frozen nothing is acknowledged: a request waits for JetStream until
the publish timeout and is answered 503 with ``Retry-After``, never 500 and never 200 (a
200 is only sent once JetStream acknowledged, fsync'ed, the spans). When it resumes,
JetStream redelivers what the writers held past ``ack_wait`` and the publishes that were
waiting in its socket land too (answered 503 already: the stream's clients retry them with
the same body, which JetStream de-duplicates). After it every span answered 200 is stored
exactly once, nothing is dead-lettered, the session rollups equal the sums over ``FINAL``,
and ingestion answers 200 again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import pytest
from _ray_pipeline import (
    ACK_WAIT_S,
    RayPipeline,
    assert_kept_exactly_once,
    assert_only_200_or_503,
    under_stream,
)
from _report import FaultReport

pytestmark = pytest.mark.ray

#: How long a request waits for JetStream before it is answered 503 (the plane's setting).
PUBLISH_TIMEOUT_S = 5.0


async def test_nats_server_stopped_past_ack_wait_answers_503_and_loses_nothing(
        ray_pipeline: RayPipeline, fault_report: FaultReport) -> None:
    pipeline = ray_pipeline
    stopped_s = 2 * ACK_WAIT_S  # past ack_wait: JetStream redelivers what writers held

    async def sigstop() -> None:
        pid = pipeline.nats.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(stopped_s)  # the fault itself: the server frozen this long
        finally:
            os.kill(pid, signal.SIGCONT)

    async with pipeline.http_ingest(f"proj-{uuid.uuid4().hex[:12]}",
                                    ingest_publish_timeout_s=PUBLISH_TIMEOUT_S) as ingest:
        began, ended = await under_stream(pipeline, ingest, sigstop)
        tally = await pipeline.settle(ingest, wait_s=120)
    refused = assert_only_200_or_503(ingest, began, ended, PUBLISH_TIMEOUT_S)
    assert refused, "no request was refused while nats-server was stopped"
    assert_kept_exactly_once(ingest, tally, await pipeline.diagnosis())
    assert pipeline.writer()["running"] is True
    fault_report.record("3. nats-server SIGSTOP past ack_wait", tally.accepted, tally.stored,
                        tally.dead_lettered, tally.duplicates, tally.settled_at - ended)
