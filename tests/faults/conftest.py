"""Fixtures of the fault-injection suite: each fault runs against the real components
(nats-server, chDB, Ray, the object store), injected for real (``kill -9``, ``ray.kill``,
a read-only directory), never mocked. Conditions are awaited with bounded timeouts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _notification_receivers import Receivers, receivers
from _ray_pipeline import ACK_WAIT_S, RayPipeline
from _report import FaultReport


@pytest.fixture(scope="session")
def fault_report() -> FaultReport:
    """Where each fault test records what it measured: ``fault_report.record(fault,
    accepted, stored, dead_lettered, duplicates, recovery_s)``; appended as JSON lines to
    ``$APIARY_FAULT_REPORT`` when set (``bench/faults`` prints them as a table)."""
    return FaultReport.from_env()


@pytest.fixture(scope="module")
def ray_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayPipeline]:
    """nats-server, local Ray, the chDB owner actor and one writer actor, as ``apiary up``
    starts them (one per test module: Ray starts once)."""
    pipeline = RayPipeline(tmp_path_factory.mktemp("faults-ray"), writer_count=1,
                           writer_flush_interval_s=0.1, writer_ack_wait_s=ACK_WAIT_S)
    try:
        pipeline.start()
        yield pipeline
    finally:
        pipeline.stop()


@pytest.fixture(scope="module")
def hub() -> Iterator[Receivers]:
    """Real HTTP receivers of notifications (webhooks), one server per test module."""
    with receivers() as started:
        yield started
