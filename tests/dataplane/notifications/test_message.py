"""The notification message: its identity (alert, window, stage), its subject, and its
publishing to JetStream (durable; a copy within the duplicate window stored once)."""

from __future__ import annotations

import pytest
from _notify import alert, fresh
from nats.aio.client import Client
from pydantic import ValidationError

from apiary.dataplane.notifications.message import (
    TestNotification,
    encode_message,
    message_id,
    parse_message,
    publish_notification,
    subject,
)
from apiary.queue import NOTIFICATIONS_STREAM
from apiary.settings import ApiarySettings


def test_message_id_is_alert_window_and_stage() -> None:
    warning = alert("org1", "proj1", "warning", alert_id="a1", window_end=1_700_000_060)
    critical = warning.model_copy(update={"stage": "critical"})
    later = warning.model_copy(update={"window_end": 1_700_000_120})
    assert message_id(warning) == "alert.a1.1700000060.warning"
    assert len({message_id(warning), message_id(critical), message_id(later)}) == 3
    # The same transition evaluated again (a restart) has the same id whatever else differs.
    again = warning.model_copy(update={"value": 0.7})
    assert message_id(again) == message_id(warning)
    assert subject(warning) == "notifications.org1.proj1"
    test = TestNotification(org_id="org1", test_id="t1", channel_ids=("c1",))
    assert message_id(test) == "test.t1"
    assert subject(test) == "notifications.org1._"


def test_message_round_trips_and_refuses_what_is_not_one() -> None:
    message = alert("org1", "proj1", "critical")
    assert parse_message(encode_message(message)) == message
    with pytest.raises(ValidationError):
        parse_message(b'{"kind": "alert", "org_id": "o"}')
    with pytest.raises(ValidationError):  # a dot would split the subject
        alert("org.1", "proj1")


async def test_publish_is_durable_and_a_copy_is_stored_once(
        nc: Client, settings: ApiarySettings) -> None:
    await fresh(nc, settings)
    js = nc.jetstream()
    message = alert("org1", "proj1", "warning")
    first = await publish_notification(js, message)
    copy = await publish_notification(js, message.model_copy(update={"value": 0.9}))
    assert first.stream == NOTIFICATIONS_STREAM
    assert not first.duplicate
    assert copy.duplicate
    assert copy.seq == first.seq
    stored = await js.get_msg(NOTIFICATIONS_STREAM, first.seq)
    assert stored.subject == "notifications.org1.proj1"
    assert stored.data is not None
    assert parse_message(stored.data) == message
    assert stored.headers is not None
    assert stored.headers["Nats-Msg-Id"] == message_id(message)
