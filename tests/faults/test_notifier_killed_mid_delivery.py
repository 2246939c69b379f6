"""A notifier actor killed (``ray.kill``) in the middle of delivering a notification to two
channels, on real Ray, real JetStream and a real receiver: after Ray restarts it and
JetStream redelivers the message, the channel it had already delivered to receives nothing
again, the other receives it exactly once, and nothing is dead-lettered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _notification_receivers import Receiver, Receivers, receivers
from nats.js.api import KeyValueConfig, StorageType

from apiary.dataplane.evaluation.proxy.envelope import envelope_from_settings
from apiary.dataplane.notifications.channels import CONFIG_BUCKET, channel_entry
from apiary.dataplane.notifications.message import AlertNotification, publish_notification
from apiary.queue import (
    NOTIFICATIONS_STREAM,
    NOTIFIERS_CONSUMER,
    NatsServer,
    connect,
    ensure_topology,
)
from apiary.settings import ApiarySettings

pytestmark = pytest.mark.ray

SECRET = "whsec-0123456789abcdef"


@pytest.fixture(scope="module")
def notifier_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiarySettings,
                                                                              str]]:
    """nats-server and local Ray (one per module), the settings of the notifier pool."""
    import ray

    data_dir = tmp_path_factory.mktemp("notifier-ray")
    settings = ApiarySettings(
        data_dir=data_dir, ray_num_cpus=2, outbound_allowlist=("127.0.0.1",),
        writer_ack_wait_s=4.0, notify_timeout_s=2.0, notify_retry_base_s=0.05,
        notify_retry_max_s=0.2, notifier_count=1)
    nats = NatsServer(data_dir)
    url = nats.start()
    started_ray = False
    try:
        if not ray.is_initialized():
            ray.init(num_cpus=2, include_dashboard=False, namespace="apiary",
                     logging_level=logging.WARNING, log_to_driver=False, configure_logging=False,
                     object_store_memory=settings.ray_object_store_bytes)
            started_ray = True
        yield settings, url
    finally:
        if started_ray:
            ray.shutdown()
        nats.stop()


@pytest.fixture(scope="module")
def hub() -> Iterator[Receivers]:
    with receivers() as started:
        yield started


async def _wait(condition: Any, wait_s: float, what: str) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not reached within {wait_s} s")


async def test_notifier_killed_mid_delivery_sends_nothing_twice(
        notifier_node: tuple[ApiarySettings, str], hub: Receivers) -> None:
    import ray

    from apiary.actors.notifier import NotifierPool

    settings, url = notifier_node
    nc = await connect(url, name="notifier-fault-test")
    js = nc.jetstream()
    await ensure_topology(js, settings)
    kv = await js.create_key_value(KeyValueConfig(bucket=CONFIG_BUCKET, history=1,
                                                  storage=StorageType.FILE))
    done = Receiver(secret=SECRET.encode())
    # In flight when the notifier dies: answers 503 once released (never accepted), then 200.
    in_flight = Receiver(secret=SECRET.encode(), gate=threading.Event(), script=[(503, None)])
    envelope = envelope_from_settings(settings)
    for name, receiver in (("done", done), ("in-flight", in_flight)):
        key, value = channel_entry(
            {"id": name, "org_id": "org1", "type": "webhook",
             "scope": {"type": "project", "id": "p1"}, "severities": ["critical"],
             "config": {"url": hub.add(f"fault-{name}", receiver), "secret": SECRET}},
            envelope)
        await kv.put(key, value)

    pool = NotifierPool(settings, url, num_cpus=0)
    try:
        await asyncio.to_thread(pool.start)
        await publish_notification(js, AlertNotification(
            org_id="org1", alert_id="err-rate", alert_name="Error rate", stage="critical",
            state="triggered", value=0.95, threshold=0.9, window_s=60,
            window_end=1_700_000_000, project_id="p1", fired_at=datetime.now(UTC)))
        await _wait(lambda: len(done.accepted()) == 1 and in_flight.arrived.is_set(), 60,
                    "one channel delivered, the other in flight")

        ray.kill(pool.notifiers[0], no_restart=False)  # Ray restarts it

        async def restarted() -> bool:
            # The kill lands asynchronously: until a call reaches the restarted (not yet
            # started) actor, the old one may still be alive, and releasing the receiver then
            # would let the old one finish the delivery itself.
            try:
                stats = await asyncio.to_thread(ray.get, pool.notifiers[0].stats.remote(),
                                                timeout=5)
            except Exception:  # noqa: BLE001 - the actor is between lives
                return False
            return not stats.get("running", True)

        await _wait(restarted, 60, "Ray restarted the killed notifier")
        assert in_flight.gate is not None
        in_flight.gate.set()

        async def settled() -> bool:
            # As `apiary up` does every few seconds: start whatever Ray restarted. (The kill
            # lands asynchronously: a call right after it may still reach the old actor.)
            await asyncio.to_thread(pool.ensure_running)
            info = await js.consumer_info(NOTIFICATIONS_STREAM, NOTIFIERS_CONSUMER)
            return not info.num_pending and not info.num_ack_pending

        try:
            await _wait(settled, 60, "the redelivered notification acknowledged")
        except AssertionError as exc:
            info = await js.consumer_info(NOTIFICATIONS_STREAM, NOTIFIERS_CONSUMER)
            raise AssertionError(
                f"{exc}; notifiers: {await asyncio.to_thread(pool.stats)}; consumer: "
                f"pending {info.num_pending}, ack pending {info.num_ack_pending}; "
                f"receivers: {[r.status for r in in_flight.all()]}") from None
        [stats] = await asyncio.to_thread(pool.stats)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(pool.stop)
        await nc.close()

    assert len(done.all()) == 1  # delivered before the kill: not sent again
    assert [r.status for r in in_flight.all()] == [503, 200]
    assert len({r.delivery for r in in_flight.all()}) == 1  # one delivery id throughout
    assert stats["already_done"] >= 1
    assert stats["delivered"] == 1
    assert stats["dead_lettered"] == 0
    assert not list((Path(settings.data_dir) / "objects").rglob("*.json"))
