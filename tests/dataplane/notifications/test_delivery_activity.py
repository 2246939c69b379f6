"""The notifier reports each ended delivery of an alert notification to the
``alert-activity`` stream (on its way to the control plane): delivered and dead-lettered,
with the channel, the attempts and a detail; a test message reports nothing. When JetStream
does not take the report (the stream is gone), the delivery is neither lost nor repeated:
the message is handed back, its delivered channel skipped on the redelivery, and the report
published then."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from _notification_receivers import Receiver, Receivers
from _notify import alert, consumer_settled, fresh, notifier, put_channel, until
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from apiary.dataplane.alerts.events import AlertActivity, delivery_event_id, parse_activity
from apiary.dataplane.notifications.message import (
    TestNotification,
    message_id,
    publish_notification,
)
from apiary.dataplane.notifications.senders import delivery_id
from apiary.queue import ALERT_ACTIVITY_STREAM, NatsServer, ensure_topology
from apiary.settings import ApiarySettings

SECRET = "whsec-0123456789abcdef"


def _settings(tmp_path: Path) -> ApiarySettings:
    return ApiarySettings(data_dir=tmp_path, outbound_allowlist=("127.0.0.1",),
                          notify_retry_base_s=0.05, notify_retry_max_s=0.2,
                          writer_ack_wait_s=6.0, notify_timeout_s=5.0)


def _webhook(ident: str, url: str) -> dict[str, Any]:
    return {"id": ident, "org_id": "org1", "type": "webhook",
            "scope": {"type": "org", "id": "org1"},
            "severities": ["warning", "critical", "resolution"],
            "config": {"url": url, "secret": SECRET}}


async def _fresh(nc: Client, settings: ApiarySettings) -> None:
    with contextlib.suppress(NotFoundError):
        await nc.jetstream().delete_stream(ALERT_ACTIVITY_STREAM)
    await fresh(nc, settings)


async def _activities(nc: Client) -> list[AlertActivity]:
    """Every activity in the ``alert-activity`` stream (read, not consumed)."""
    js = nc.jetstream()
    info = await js.stream_info(ALERT_ACTIVITY_STREAM)
    found = []
    for seq in range(int(info.state.first_seq or 1), int(info.state.last_seq or 0) + 1):
        with contextlib.suppress(NotFoundError):
            found.append(parse_activity((await js.get_msg(ALERT_ACTIVITY_STREAM, seq)).data
                                        or b""))
    return found


async def test_each_ended_delivery_of_an_alert_is_reported(
        nc: Client, nats_server: NatsServer, hub: Receivers, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    await _fresh(nc, settings)
    good = Receiver(secret=SECRET.encode(), script=[(503, None)])
    gone = Receiver(secret=SECRET.encode(), script=[(410, None)] * 3)
    await put_channel(nc, settings, **_webhook("hook-good", hub.add("act-good", good)))
    await put_channel(nc, settings, **_webhook("hook-gone", hub.add("act-gone", gone)))
    message = alert("org1", "p1", "critical", alert_id="err-rate", window_end=1_700_000_000)
    ident = message_id(message)
    async with notifier(settings, nats_server.url) as service:
        js = nc.jetstream()
        await publish_notification(js, message)
        # The test message only once the alert went through, so that the receiver's one 503
        # answers the alert (in CI the test message came first and took it: attempts 1 != 2).
        await until(lambda: len(good.accepted()) == 1, 30, "the alert delivered")
        await publish_notification(js, TestNotification(org_id="org1", test_id="t1",
                                                        channel_ids=("hook-good",)))
        await until(lambda: consumer_settled(nc), 30, "both messages acknowledged")
        stats = await service.stats()
    assert len(good.accepted()) == 2  # the alert, after one 503, and the test
    reported = {a.channel_id: a for a in await _activities(nc)}
    assert set(reported) == {"hook-good", "hook-gone"}  # the test message reports nothing
    delivered, dead = reported["hook-good"], reported["hook-gone"]
    assert delivered.event_id == delivery_event_id(delivery_id(ident, "hook-good"),
                                                   "delivered")
    assert (delivered.kind, delivered.outcome, delivered.attempts, delivered.channel_type,
            delivered.alert_id, delivered.project_id, delivered.org_id, delivered.stage,
            delivered.state, delivered.window_end) == (
        "delivery", "delivered", 2, "webhook", "err-rate", "p1", "org1", "critical",
        "triggered", 1_700_000_000)
    assert dead.event_id == delivery_event_id(delivery_id(ident, "hook-gone"),
                                              "dead_lettered")
    assert (dead.outcome, dead.attempts) == ("dead_lettered", 1)
    assert dead.detail is not None
    assert "410" in dead.detail
    assert stats["activity_published"] == 2
    assert stats["activity_failures"] == 0


async def test_a_report_jetstream_refuses_neither_loses_nor_repeats_the_delivery(
        nc: Client, nats_server: NatsServer, hub: Receivers, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    await _fresh(nc, settings)
    receiver = Receiver(secret=SECRET.encode())
    await put_channel(nc, settings, **_webhook("hook-once", hub.add("act-once", receiver)))
    js = nc.jetstream()
    await js.delete_stream(ALERT_ACTIVITY_STREAM)  # JetStream now refuses every report
    message = alert("org1", "p1", "warning", alert_id="err-rate", window_end=1_700_000_060)
    async with notifier(settings, nats_server.url) as service:
        await publish_notification(js, message)

        async def failed() -> bool:
            return int((await service.stats())["activity_failures"]) >= 1

        await until(failed, 30, "the report refused")
        assert len(receiver.accepted()) == 1
        assert not await consumer_settled(nc)  # handed back, not acknowledged
        await ensure_topology(js, settings)  # the stream is back
        await until(lambda: consumer_settled(nc), 30, "the redelivery acknowledged")
        stats = await service.stats()
    assert len(receiver.all()) == 1  # delivered once: the redelivery skipped it
    assert stats["already_done"] >= 1
    reported = await _activities(nc)
    assert [(a.channel_id, a.outcome, a.attempts) for a in reported] == [
        ("hook-once", "delivered", 1)]
    assert reported[0].event_id == delivery_event_id(
        delivery_id(message_id(message), "hook-once"), "delivered")
