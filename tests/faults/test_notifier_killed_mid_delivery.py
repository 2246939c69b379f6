"""A notifier actor killed (``ray.kill``) in the middle of delivering a notification to two
channels, on real Ray, real JetStream and a real receiver: after Ray restarts it and
JetStream redelivers the message, the channel it had already delivered to receives nothing
again, the other receives it exactly once, and nothing is dead-lettered."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from _notification_receivers import Receiver, Receivers
from _ray_node import config_bucket, ray_node, wait_restarted
from _waits import until

from apiary.dataplane.evaluation.proxy.envelope import envelope_from_settings
from apiary.dataplane.notifications.channels import channel_entry
from apiary.dataplane.notifications.message import AlertNotification, publish_notification
from apiary.queue import (
    NOTIFICATIONS_STREAM,
    NOTIFIERS_CONSUMER,
)
from apiary.settings import ApiarySettings

pytestmark = pytest.mark.ray

SECRET = "whsec-0123456789abcdef"


@pytest.fixture(scope="module")
def notifier_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiarySettings,
                                                                              str]]:
    """nats-server and local Ray (one per module), the settings of the notifier pool."""
    with ray_node(tmp_path_factory.mktemp("notifier-ray"), writer_ack_wait_s=4.0,
                  notify_timeout_s=2.0, notify_retry_base_s=0.05, notify_retry_max_s=0.2,
                  notifier_count=1) as started:
        yield started


async def test_notifier_killed_mid_delivery_sends_nothing_twice(
        notifier_node: tuple[ApiarySettings, str], hub: Receivers) -> None:
    import ray

    from apiary.actors.notifier import NotifierPool

    settings, url = notifier_node
    nc, kv = await config_bucket(url, settings, "notifier-fault-test")
    js = nc.jetstream()
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
        await until(lambda: len(done.accepted()) == 1 and in_flight.arrived.is_set(), 60,
                    "one channel delivered, the other in flight")

        ray.kill(pool.notifiers[0], no_restart=False)  # Ray restarts it

        # The kill lands asynchronously: until a call reaches the restarted (not yet
        # started) actor, the old one may still be alive, and releasing the receiver then
        # would let the old one finish the delivery itself.
        await wait_restarted(pool.notifiers[0], "Ray restarted the killed notifier")
        assert in_flight.gate is not None
        in_flight.gate.set()

        async def settled() -> bool:
            # As `apiary up` does every few seconds: start whatever Ray restarted.
            await asyncio.to_thread(pool.ensure_running)
            if not any(r.status == 200 for r in in_flight.all()):
                # A message handed back with a delay (its channel still claimed by the dead
                # actor) is counted neither pending nor awaiting an ack until redelivered.
                return False
            info = await js.consumer_info(NOTIFICATIONS_STREAM, NOTIFIERS_CONSUMER)
            return not info.num_pending and not info.num_ack_pending

        try:
            await until(settled, 60, "the redelivered notification acknowledged")
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
