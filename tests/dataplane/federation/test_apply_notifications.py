"""The appliers of pushed notification channels and channel tests
(apiary.dataplane.federation.apply), against a real JetStream: a channel lands in the
federation bucket sealed with this data plane's envelope (no secret in the clear) where the
notifier finds it, a deletion removes it, and a test request publishes one ``test`` message
to ``notifications.<org>.<project>`` restricted to its channel."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from _notification_receivers import Receiver, Receivers, receivers
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError, NotFoundError

from apiary.dataplane.evaluation.definitions import DEFINITIONS_BUCKET
from apiary.dataplane.evaluation.proxy.envelope import envelope_from_settings
from apiary.dataplane.federation.apply import Change, ConfigApplier
from apiary.dataplane.notifications.channels import KvChannelDirectory, open_entry
from apiary.dataplane.notifications.deliveries import DELIVERIES_BUCKET
from apiary.dataplane.notifications.message import TestNotification, parse_message
from apiary.dataplane.notifications.service import NotifierService
from apiary.dataplane.replica.federation_state import CONFIG_BUCKET, STATE_BUCKET
from apiary.queue import (
    NOTIFICATIONS_STREAM,
    NOTIFIERS_CONSUMER,
    NatsServer,
    connect,
    ensure_topology,
)
from apiary.settings import ApiarySettings

HOOK = "https://receiver.example.test/hooks/webhook-secret-path"
SIGNING = "signing-secret-0123456789"
SMTP = "smtp://mailer:smtp-password-123@smtp.example.test:25"


@pytest.fixture
def dp_settings(tmp_path: Path) -> ApiarySettings:
    return ApiarySettings(data_dir=tmp_path, outbound_allowlist=("127.0.0.1",),
                          notify_retry_base_s=0.05, notify_retry_max_s=0.2,
                          notify_timeout_s=5.0)


@pytest.fixture
async def nc(nats_server: NatsServer, dp_settings: ApiarySettings) -> AsyncIterator[Client]:
    client = await connect(nats_server.url, name="apply-notifications-test")
    js = client.jetstream()
    for bucket in (STATE_BUCKET, CONFIG_BUCKET, DEFINITIONS_BUCKET, DELIVERIES_BUCKET):
        with contextlib.suppress(NotFoundError, Exception):
            await js.delete_key_value(bucket)
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(NOTIFICATIONS_STREAM)
    await ensure_topology(js, dp_settings)
    yield client
    await client.close()


@pytest.fixture
async def applier(nc: Client, dp_settings: ApiarySettings) -> ConfigApplier:
    return await ConfigApplier.open(nc, dp_settings)


def change(version: int, kind: str, project: str, obj: str, payload: dict[str, Any] | None,
           *, deleted: bool = False) -> Change:
    return Change.of(version, kind, project, obj, deleted,
                     orjson.dumps(payload) if payload is not None else b"")


def webhook(channel_id: str = "ch-1", **over: Any) -> dict[str, Any]:
    return {"id": channel_id, "org_id": "org-1", "name": "pager", "type": "webhook",
            "scope": {"type": "project", "id": "p-1"}, "severities": ["critical"],
            "enabled": True, "config": {"url": HOOK, "secret": SIGNING}, **over}


async def test_a_channel_is_stored_sealed_and_found_by_the_notifier(
        nc: Client, applier: ConfigApplier, dp_settings: ApiarySettings,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    email = {"id": "ch-2", "org_id": "org-1", "name": "mail", "type": "email",
             "scope": {"type": "org", "id": "org-1"}, "severities": ["warning"],
             "enabled": True,
             "config": {"recipients": ["oncall@acme.example"], "smtp_url": SMTP}}
    await applier.apply(change(3, "notification_channel", "", "ch-1", webhook()))
    await applier.apply(change(4, "notification_channel", "", "ch-2", email))
    raw = await applier.config.get("notification_channel.org-1.ch-1")
    assert raw.value is not None
    for secret in (b"webhook-secret-path", b"receiver.example.test", SIGNING.encode()):
        assert secret not in raw.value
    mail = await applier.config.get("notification_channel.org-1.ch-2")
    assert mail.value is not None
    assert b"smtp-password-123" not in mail.value
    opened = open_entry(raw.value, envelope_from_settings(dp_settings))
    assert opened.config.url.get_secret_value() == HOOK  # type: ignore[union-attr]
    assert opened.config.secret.get_secret_value() == SIGNING  # type: ignore[union-attr]

    directory = KvChannelDirectory(nc.jetstream(), envelope_from_settings(dp_settings))
    assert sorted(c.id for c in await directory.channels("org-1")) == ["ch-1", "ch-2"]
    assert await directory.channels("org-2") == []
    # Applying the same entry again changes nothing the notifier sees.
    await applier.apply(change(3, "notification_channel", "", "ch-1", webhook()))
    assert sorted(c.id for c in await directory.channels("org-1")) == ["ch-1", "ch-2"]

    await applier.apply(change(5, "notification_channel", "", "ch-1",
                               {"id": "ch-1", "org_id": "org-1"}, deleted=True))
    assert [c.id for c in await directory.channels("org-1")] == ["ch-2"]
    assert await applier.applied_version() == 5
    assert "config change applied" in caplog.text
    logged = caplog.text + repr([r.__dict__ for r in caplog.records])  # with the extras
    for secret in ("webhook-secret-path", SIGNING, "smtp-password-123"):
        assert secret not in logged


async def test_a_channel_that_is_not_one_is_skipped_not_fatal(
        applier: ConfigApplier) -> None:
    bad = webhook(config={"url": HOOK, "secret": "short"})
    assert await applier.apply(change(7, "notification_channel", "", "ch-1", bad)) == 7
    with pytest.raises(KeyNotFoundError):
        await applier.config.get("notification_channel.org-1.ch-1")


def _test_payload(test_id: str, requested_at: datetime) -> dict[str, Any]:
    return {"test_id": test_id, "channel_id": "ch-1", "org_id": "org-1",
            "workspace_id": "ws-1", "project_id": "p-1", "requested_by": "user:u",
            "requested_at": requested_at.isoformat()}


async def test_a_test_request_publishes_one_test_message_for_its_channel(
        nc: Client, applier: ConfigApplier) -> None:
    js = nc.jetstream()
    entry = change(9, "notification_test", "p-1", "t-1",
                   _test_payload("t-1", datetime.now(UTC)))
    await applier.apply(entry)
    await applier.apply(entry)  # re-applied (a reconnect before the ack): one message
    info = await js.stream_info(NOTIFICATIONS_STREAM)
    assert info.state.messages == 1
    stored = await js.get_msg(NOTIFICATIONS_STREAM, info.state.last_seq)
    assert stored.subject == "notifications.org-1.p-1"
    assert stored.headers is not None
    assert stored.headers["Nats-Msg-Id"] == "test.t-1"
    assert stored.data is not None
    message = parse_message(stored.data)
    assert isinstance(message, TestNotification)
    assert (message.test_id, message.channel_ids, message.workspace_id) == (
        "t-1", ("ch-1",), "ws-1")

    # A request the data plane only gets long after (catching up) is not sent.
    stale = datetime.now(UTC) - timedelta(hours=2)
    await applier.apply(change(10, "notification_test", "p-1", "t-2",
                               _test_payload("t-2", stale)))
    assert (await js.stream_info(NOTIFICATIONS_STREAM)).state.messages == 1
    assert await applier.applied_version() == 10


@pytest.fixture(scope="module")
def hub() -> Iterator[Receivers]:
    with receivers() as started:
        yield started


async def _until(predicate: Callable[[], Awaitable[bool]], wait_s: float, what: str) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {wait_s} s")


async def test_a_pushed_channel_and_test_reach_the_receiver_signed_once(
        nc: Client, nats_server: NatsServer, applier: ConfigApplier, hub: Receivers,
        dp_settings: ApiarySettings) -> None:
    """End to end on the data plane: the pushed channel (sealed in the bucket) and the
    pushed test, delivered by the real notifier to a receiver that checks the signature."""
    receiver = Receiver(secret=SIGNING.encode())
    other = Receiver(secret=SIGNING.encode())
    await applier.apply(change(1, "notification_channel", "", "ch-1",
                               webhook(config={"url": hub.add("pushed", receiver),
                                               "secret": SIGNING})))
    await applier.apply(change(2, "notification_channel", "", "ch-9",
                               webhook("ch-9", config={"url": hub.add("other", other),
                                                       "secret": SIGNING})))
    await applier.apply(change(3, "notification_test", "p-1", "t-e2e",
                               _test_payload("t-e2e", datetime.now(UTC))))
    service = NotifierService(dp_settings, nats_server.url, "apply-e2e")
    await service.start()
    try:
        async def settled() -> bool:
            info = await nc.jetstream().consumer_info(NOTIFICATIONS_STREAM,
                                                      NOTIFIERS_CONSUMER)
            return bool(receiver.accepted()) and not info.num_pending \
                and not info.num_ack_pending
        await _until(settled, 30, "the test delivered and acknowledged")
    finally:
        await service.stop()
    delivered = receiver.accepted()
    assert len(delivered) == 1  # signed with the channel's secret (else the receiver 401s)
    assert [r.status for r in receiver.all()] == [200]
    assert delivered[0].delivery
    body = json.loads(delivered[0].body)
    assert (body["kind"], body["project_id"], body["org_id"]) == ("test", "p-1", "org-1")
    assert other.all() == []  # the test names its channel: the org's others hear nothing
