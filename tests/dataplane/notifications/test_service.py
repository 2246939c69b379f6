"""The notifier against real NATS JetStream and real receivers: each notification reaches
each matching channel once (across a pool, and for a copy published again), a receiver
answering 503 for a while gets it once when it recovers, Retry-After is honoured, a
delivery past the max age is dead-lettered and the message acknowledged, and a message
handed back mid-delivery does not reach the channels already done again."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _notification_receivers import Mailbox, Receiver, Receivers
from _notify import alert, consumer_settled, fresh, notifier, put_channel, until
from nats.aio.client import Client

from apiary.dataplane.notifications.deliveries import DeliveryLedger
from apiary.dataplane.notifications.message import Stage, message_id, publish_notification
from apiary.dataplane.notifications.senders import delivery_id
from apiary.errors import Conflict
from apiary.objects import object_store
from apiary.queue import NatsServer
from apiary.queue.dead_letters import DeadLetters, Selection
from apiary.settings import ApiarySettings

SECRET = "whsec-0123456789abcdef"


def _settings(tmp_path: Path, **changes: Any) -> ApiarySettings:
    values: dict[str, Any] = {"outbound_allowlist": ("127.0.0.1",), "notify_retry_base_s": 0.05,
                              "notify_retry_max_s": 0.2, "writer_ack_wait_s": 6.0,
                              "notify_timeout_s": 5.0}
    return ApiarySettings(data_dir=tmp_path, **{**values, **changes})


def _webhook(ident: str, url: str, scope: dict[str, str],
             severities: tuple[str, ...] = ("warning", "critical", "resolution"),
             secret: str = SECRET) -> dict[str, Any]:
    return {"id": ident, "org_id": "org1", "type": "webhook", "scope": scope,
            "severities": list(severities), "config": {"url": url, "secret": secret}}


async def test_each_notification_reaches_each_matching_channel_once(
        nc: Client, nats_server: NatsServer, hub: Receivers, smtp: tuple[str, Mailbox],
        tmp_path: Path) -> None:
    smtp_url, mailbox = smtp
    settings = _settings(tmp_path, notify_smtp_url=smtp_url)
    await fresh(nc, settings)
    p1, p2 = Receiver(secret=SECRET.encode()), Receiver(secret=SECRET.encode())
    slack = Receiver()
    await put_channel(nc, settings, **_webhook("hook-p1", hub.add("svc-p1", p1),
                                               {"type": "project", "id": "p1"}))
    await put_channel(nc, settings, **_webhook("hook-p2", hub.add("svc-p2", p2),
                                               {"type": "project", "id": "p2"}))
    await put_channel(nc, settings, id="slack-org", org_id="org1", type="slack",
                      scope={"type": "org", "id": "org1"}, severities=["warning", "critical"],
                      config={"webhook_url": hub.add("svc-slack", slack)})
    await put_channel(nc, settings, id="mail-p1", org_id="org1", type="email",
                      scope={"type": "project", "id": "p1"}, severities=["critical"],
                      config={"recipients": ["oncall@example.com"]})
    mails_before = len(mailbox.received())
    js = nc.jetstream()
    window = 1_700_000_060
    stages: tuple[Stage, ...] = ("warning", "critical", "resolution")
    transitions = [alert("org1", "p1", stage, alert_id="err-rate", window_end=window + i)
                   for i, stage in enumerate(stages)]
    async with notifier(settings, nats_server.url, "n1"), \
            notifier(settings, nats_server.url, "n2"):  # a pool of two on one consumer
        for message in transitions:
            await publish_notification(js, message)
        # The evaluator publishing the same transition again: within the duplicate window
        # JetStream drops it; after it (another stream message), the records skip it.
        await publish_notification(js, transitions[0])
        await publish_notification(js, transitions[1], msg_id="after-the-window")
        await until(lambda: consumer_settled(nc), 30, "every notification acknowledged")
    received = [json.loads(r.body)["stage"] for r in p1.accepted()]
    assert sorted(received) == ["critical", "resolution", "warning"]
    assert len(p1.all()) == 3
    assert len({r.delivery for r in p1.all()}) == 3
    assert sorted(json.loads(r.body)["text"].split("]")[0] for r in slack.all()) == [
        "[CRITICAL", "[warning"]
    assert p2.all() == []  # scoped to another project
    mails = mailbox.received()[mails_before:]
    assert [to for to, _ in mails] == [["oncall@example.com"]]
    assert mails[0][1]["X-Apiary-Delivery"] == delivery_id(message_id(transitions[1]),
                                                           "mail-p1")


async def test_a_receiver_answering_503_for_a_while_gets_it_once_when_it_recovers(
        nc: Client, nats_server: NatsServer, hub: Receivers, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    await fresh(nc, settings)
    flaky = Receiver(secret=SECRET.encode(), script=[(503, None)] * 6)
    await put_channel(nc, settings, **_webhook("flaky", hub.add("svc-flaky", flaky),
                                               {"type": "org", "id": "org1"}))
    async with notifier(settings, nats_server.url) as service:
        await publish_notification(nc.jetstream(), alert("org1", "p1", "critical"))
        await until(lambda: consumer_settled(nc), 30, "the notification acknowledged")
        stats = await service.stats()
    assert [r.status for r in flaky.all()] == [503] * 6 + [200]
    assert len(flaky.accepted()) == 1
    assert len({r.delivery for r in flaky.all()}) == 1  # the same delivery id each attempt
    assert stats["retries"] == 6
    assert stats["delivered"] == 1
    assert stats["dead_lettered"] == 0


async def test_retry_after_is_honoured(
        nc: Client, nats_server: NatsServer, hub: Receivers, tmp_path: Path) -> None:
    # Back-off bounds far below Retry-After: only the header can explain the wait.
    settings = _settings(tmp_path, notify_retry_base_s=0.01, notify_retry_max_s=0.02)
    await fresh(nc, settings)
    busy = Receiver(script=[(429, "2")])
    await put_channel(nc, settings, id="busy", org_id="org1", type="slack",
                      scope={"type": "org", "id": "org1"}, severities=["warning"],
                      config={"webhook_url": hub.add("svc-busy", busy)})
    async with notifier(settings, nats_server.url):
        await publish_notification(nc.jetstream(), alert("org1", "p1", "warning"))
        await until(lambda: consumer_settled(nc), 30, "the notification acknowledged")
    first, second = busy.all()
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.95


async def test_past_the_max_age_a_delivery_is_dead_lettered_and_the_message_acked(
        nc: Client, nats_server: NatsServer, hub: Receivers, tmp_path: Path) -> None:
    settings = _settings(tmp_path, notify_max_age_s=1.5)
    await fresh(nc, settings)
    down = Receiver(secret=SECRET.encode(), script=[(503, None)] * 10_000)
    wrong = Receiver(secret=b"another-secret-entirely")
    healthy = Receiver(secret=SECRET.encode())
    for name, receiver in (("down", down), ("wrong", wrong), ("healthy", healthy)):
        await put_channel(nc, settings, **_webhook(name, hub.add(f"svc-{name}", receiver),
                                                   {"type": "project", "id": "p1"}))
    message = alert("org1", "p1", "critical")
    async with notifier(settings, nats_server.url) as service:
        await publish_notification(nc.jetstream(), message)
        await until(lambda: consumer_settled(nc), 30, "the notification acknowledged")
        stats = await service.stats()
    assert len(healthy.accepted()) == 1
    assert [r.status for r in wrong.all()] == [401]  # refused for good: never retried
    assert len(down.all()) > 1
    assert stats["dead_lettered"] == 1
    assert stats["failed_deliveries"] == 2
    [letter] = await DeadLetters(object_store(settings)).select(
        Selection(stream="notifications"))
    assert letter.stage == "delivery"
    assert letter.project_id == "p1"
    assert "notify_max_age_s" in letter.error
    assert "down" in letter.error
    assert "401" in letter.error
    kept = letter.payload()["json"]
    assert sorted(kept["channel_ids"]) == ["down", "wrong"]  # a replay retries those alone
    assert kept["alert_id"] == message.alert_id
    ledger = await DeliveryLedger.open(nc.jetstream(), settings)
    ident = message_id(message)
    assert await ledger.outcome(delivery_id(ident, "down")) == "dead_lettered"
    assert await ledger.outcome(delivery_id(ident, "healthy")) == "delivered"


async def test_a_message_handed_back_mid_delivery_skips_the_channels_already_done(
        nc: Client, nats_server: NatsServer, hub: Receivers, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    await fresh(nc, settings)
    fast = Receiver(secret=SECRET.encode())
    slow = Receiver(secret=SECRET.encode(), gate=threading.Event())
    await put_channel(nc, settings, **_webhook("fast", hub.add("svc-fast", fast),
                                               {"type": "org", "id": "org1"}))
    await put_channel(nc, settings, **_webhook("slow", hub.add("svc-slow", slow),
                                               {"type": "org", "id": "org1"}))
    async with notifier(settings, nats_server.url, "first"):
        await publish_notification(nc.jetstream(), alert("org1", "p1", "warning"))
        await until(lambda: len(fast.accepted()) == 1 and slow.arrived.is_set(), 30,
                    "fast delivered, slow in flight")
    # The first notifier stopped mid-delivery: it handed the message back.
    assert slow.gate is not None
    slow.gate.set()
    async with notifier(settings, nats_server.url, "second"):
        await until(lambda: consumer_settled(nc), 30, "the notification acknowledged")
    assert len(fast.all()) == 1  # done before: not sent again
    assert len(slow.accepted()) >= 1
    assert len({r.delivery for r in slow.all()}) == 1  # a repeat carries the same id


@pytest.mark.parametrize("poison", [b"not json", b'{"kind": "alert"}'])
async def test_a_message_that_is_not_a_notification_is_dead_lettered(
        nc: Client, nats_server: NatsServer, tmp_path: Path, poison: bytes) -> None:
    settings = _settings(tmp_path)
    await fresh(nc, settings)
    async with notifier(settings, nats_server.url):
        await nc.jetstream().publish("notifications.org1.p1", poison)
        await until(lambda: consumer_settled(nc), 30, "the message terminated")
    [letter] = await DeadLetters(object_store(settings)).select(
        Selection(stream="notifications"))
    assert letter.stage == "decode"
    assert letter.data == poison


async def test_replaying_a_delivery_dead_letter_retries_only_the_channels_that_failed(
        nc: Client, nats_server: NatsServer, hub: Receivers, tmp_path: Path) -> None:
    # A short duplicate window: JetStream forgets the original's id before the replay.
    settings = _settings(tmp_path, notify_max_age_s=1.0, duplicate_window_s=1.0)
    await fresh(nc, settings)
    down = Receiver(secret=SECRET.encode(), script=[(503, None)] * 10_000)
    healthy = Receiver(secret=SECRET.encode())
    for name, receiver in (("was-down", down), ("always-up", healthy)):
        await put_channel(nc, settings, **_webhook(name, hub.add(f"svc-replay-{name}", receiver),
                                                   {"type": "org", "id": "org1"}))
    dead_letters = DeadLetters(object_store(settings), nc.jetstream())
    async with notifier(settings, nats_server.url) as service:
        await publish_notification(nc.jetstream(), alert("org1", "p1", "critical"))
        await until(lambda: consumer_settled(nc), 30, "the notification dead-lettered")
        with down.lock:
            down.script.clear()  # the receiver is back
        [letter] = await dead_letters.select(Selection(stream="notifications"))

        async def replayed() -> bool:
            try:
                return await dead_letters.replay(letter)
            except Conflict:  # JetStream still remembers the original's id
                return False

        await until(replayed, 30, "the dead letter replayed")
        await until(lambda: len(down.accepted()) == 1, 30, "the failed channel delivered")
        await until(lambda: consumer_settled(nc), 30, "the replay acknowledged")
        stats = await service.stats()
    assert len(healthy.all()) == 1  # delivered the first time: not part of the replay
    assert len({r.delivery for r in down.all()}) == 1  # the same delivery id throughout
    assert stats["dead_lettered"] == 1
    assert await dead_letters.select(Selection(stream="notifications")) == []


async def test_a_message_retried_past_ack_wait_is_kept_alive_not_redelivered(
        nc: Client, nats_server: NatsServer, hub: Receivers, tmp_path: Path) -> None:
    settings = _settings(tmp_path, writer_ack_wait_s=2.0)
    await fresh(nc, settings)
    down = Receiver(secret=SECRET.encode(), down_until=time.time() + 5.0)  # 2.5 x ack_wait
    await put_channel(nc, settings, **_webhook("long-down", hub.add("svc-long-down", down),
                                               {"type": "org", "id": "org1"}))
    async with notifier(settings, nats_server.url) as service:
        await publish_notification(nc.jetstream(), alert("org1", "p1", "critical"))
        await until(lambda: consumer_settled(nc), 30, "the notification acknowledged")
        stats = await service.stats()
    info = await nc.jetstream().consumer_info("notifications", "notifiers")
    assert stats["received"] == 1  # held with in_progress: JetStream never redelivered it
    assert info.num_redelivered == 0
    assert len(down.accepted()) == 1
    assert down.accepted()[0].at >= down.down_until
