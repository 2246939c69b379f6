"""The issue's own case, at its own length: a webhook receiver that answers 503 for two
minutes, on real NATS JetStream and a real HTTP receiver, with an acknowledgement wait far
shorter than the outage (so the message must be kept alive, not redelivered) and the
notifier's back-off capped at 10 s (so the first attempt after the recovery comes soon).
It receives the notification exactly once, after it recovers, under one delivery id."""

from __future__ import annotations

import time
from pathlib import Path

from _notification_receivers import Receiver, Receivers
from _notify import alert, consumer_settled, fresh, notifier, put_channel, until
from nats.aio.client import Client

from apiary.dataplane.notifications.message import publish_notification
from apiary.queue import NOTIFICATIONS_STREAM, NOTIFIERS_CONSUMER, NatsServer
from apiary.settings import ApiarySettings

SECRET = "whsec-0123456789abcdef"
OUTAGE_S = 120.0
RETRY_MAX_S = 10.0


async def test_a_receiver_answering_503_for_two_minutes_gets_it_once_when_it_recovers(
        nc: Client, nats_server: NatsServer, hub: Receivers, tmp_path: Path) -> None:
    settings = ApiarySettings(data_dir=tmp_path, outbound_allowlist=("127.0.0.1",),
                              notify_retry_base_s=1.0, notify_retry_max_s=RETRY_MAX_S,
                              writer_ack_wait_s=15.0, notify_timeout_s=5.0)
    await fresh(nc, settings)
    down = Receiver(secret=SECRET.encode(), down_until=time.time() + OUTAGE_S)
    await put_channel(nc, settings, id="two-minutes", org_id="org1", type="webhook",
                      scope={"type": "project", "id": "p1"},
                      severities=["warning", "critical", "resolution"],
                      config={"url": hub.add("svc-two-minutes", down), "secret": SECRET})
    async with notifier(settings, nats_server.url) as service:
        await publish_notification(nc.jetstream(), alert("org1", "p1", "critical"))
        await until(lambda: len(down.accepted()) == 1, OUTAGE_S + 4 * RETRY_MAX_S + 30,
                    "the notification delivered after the outage")
        await until(lambda: consumer_settled(nc), 30, "the notification acknowledged")
        stats = await service.stats()
    info = await nc.jetstream().consumer_info(NOTIFICATIONS_STREAM, NOTIFIERS_CONSUMER)
    attempts = down.all()
    assert len(down.accepted()) == 1
    assert [r.status for r in attempts[:-1]] == [503] * (len(attempts) - 1)
    assert attempts[-1].status == 200
    assert attempts[-1].at >= down.down_until
    # Retried throughout the outage, and soon after it: the back-off cap holds.
    assert len(attempts) >= OUTAGE_S / RETRY_MAX_S
    assert attempts[-1].at - down.down_until <= RETRY_MAX_S + settings.notify_timeout_s
    assert len({r.delivery for r in attempts}) == 1  # one delivery id across every retry
    # Kept alive past eight acknowledgement waits: JetStream never handed it out again.
    assert stats["received"] == 1
    assert info.num_redelivered == 0
    assert stats["delivered"] == 1
    assert stats["dead_lettered"] == 0
