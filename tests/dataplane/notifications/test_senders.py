"""One attempt at one delivery, against real receivers: a webhook receiver checking the
signature, a Slack stand-in, an SMTP server (aiosmtpd), SES (moto_server); the outbound-URL
policy; what is retryable and what is not."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from _notification_receivers import Mailbox, Receiver, Receivers
from _notify import alert

from apiary.dataplane.notifications.channels import Channel
from apiary.dataplane.notifications.message import TestNotification
from apiary.dataplane.notifications.senders import (
    Senders,
    delivery_id,
    retry_after_seconds,
    sign,
    verify_signature,
)
from apiary.errors import DeliveryFailed, DeliveryRetryable
from apiary.settings import ApiarySettings

SECRET = "whsec-0123456789abcdef"


def _channel(kind: str, config: dict[str, Any], ident: str = "c1") -> Channel:
    return Channel.from_plain({"id": ident, "org_id": "org1", "type": kind,
                               "scope": {"type": "org", "id": "org1"},
                               "severities": ["warning", "critical", "resolution"],
                               "config": config})


def _settings(base: ApiarySettings, **changes: Any) -> ApiarySettings:
    return ApiarySettings(data_dir=base.data_dir, outbound_allowlist=("127.0.0.1",), **changes)


@pytest.fixture
def local(settings: ApiarySettings) -> ApiarySettings:
    """Settings that let the senders call 127.0.0.1 (the test's receivers)."""
    return _settings(settings)


async def test_a_webhook_gets_the_documented_body_signed_and_its_delivery_id(
        hub: Receivers, local: ApiarySettings) -> None:
    receiver = Receiver(secret=SECRET.encode())
    url = hub.add("signed", receiver)
    message = alert("org1", "proj1", "critical")
    delivery = delivery_id("alert.a.1.critical", "c1")
    senders = Senders(local)
    try:
        await senders.send(_channel("webhook", {"url": url, "secret": SECRET}), message,
                           delivery)
    finally:
        await senders.close()
    [got] = receiver.all()
    assert got.status == 200  # the receiver's own check verified the signature
    assert got.delivery == delivery
    body = json.loads(got.body)
    assert {k: body[k] for k in ("alert_id", "alert_name", "stage", "state", "value",
                                 "threshold", "window_s", "project_id", "link")} == {
        "alert_id": message.alert_id, "alert_name": "Error rate", "stage": "critical",
        "state": "triggered", "value": 0.62, "threshold": 0.5, "window_s": 60,
        "project_id": "proj1", "link": message.link}
    assert body["fired_at"].endswith("Z")
    assert verify_signature(SECRET.encode(), got.body, got.headers["x-apiary-signature"])


async def test_a_wrong_secret_fails_the_receivers_check(
        hub: Receivers, local: ApiarySettings) -> None:
    receiver = Receiver(secret=b"the-receivers-real-secret")
    url = hub.add("wrong-secret", receiver)
    senders = Senders(local)
    try:
        with pytest.raises(DeliveryFailed) as failed:
            await senders.send(_channel("webhook", {"url": url, "secret": SECRET}),
                               alert("org1", "p1"), "d1")
    finally:
        await senders.close()
    assert not failed.value.retryable  # 401: retrying the same signature cannot help
    assert failed.value.context["status"] == 401
    assert [r.status for r in receiver.all()] == [401]
    body = receiver.all()[0].body
    header = receiver.all()[0].headers["x-apiary-signature"]
    assert not verify_signature(b"the-receivers-real-secret", body, header)
    assert not verify_signature(SECRET.encode(), body + b" ", header)  # altered body
    stale = sign(SECRET.encode(), body, int(time.time()) - 3600)
    assert not verify_signature(SECRET.encode(), body, stale)  # replayed an hour later


async def test_slack_gets_block_kit_with_value_threshold_and_link(
        hub: Receivers, local: ApiarySettings) -> None:
    receiver = Receiver()
    url = hub.add("slack", receiver)
    message = alert("org1", "proj1", "warning")
    senders = Senders(local)
    try:
        await senders.send(_channel("slack", {"webhook_url": url}), message, "d-slack")
    finally:
        await senders.close()
    [got] = receiver.all()
    payload = json.loads(got.body)
    kinds = [b["type"] for b in payload["blocks"]]
    assert kinds == ["header", "section", "actions", "context"]
    assert "Error rate" in payload["blocks"][0]["text"]["text"]
    fields = " ".join(f["text"] for f in payload["blocks"][1]["fields"])
    assert "*Stage*\nwarning" in fields
    assert "*Value*\n0.62" in fields
    assert "*Threshold*\n0.5" in fields
    assert payload["blocks"][2]["elements"][0]["url"] == message.link
    assert got.delivery == "d-slack"


@pytest.mark.parametrize(("status", "retry_after", "retryable"), [
    (503, None, True), (500, None, True), (408, None, True), (429, "7", True),
    (400, None, False), (404, None, False), (410, None, False)])
async def test_what_a_receivers_answer_makes_retryable(
        hub: Receivers, local: ApiarySettings, status: int, retry_after: str | None,
        retryable: bool) -> None:
    receiver = Receiver(script=[(status, retry_after)])
    url = hub.add(f"answer-{status}", receiver)
    senders = Senders(local)
    try:
        with pytest.raises(DeliveryFailed) as failed:
            await senders.send(_channel("slack", {"webhook_url": url}), alert("o1", "p1"),
                               "d")
    finally:
        await senders.close()
    assert failed.value.retryable is retryable
    assert isinstance(failed.value, DeliveryRetryable) is retryable
    assert failed.value.context["status"] == status
    if retry_after is not None:
        assert isinstance(failed.value, DeliveryRetryable)
        assert failed.value.retry_after == 7.0


async def test_a_receiver_that_cannot_be_reached_is_retryable(local: ApiarySettings) -> None:
    from _servers import free_port

    senders = Senders(local)
    try:
        with pytest.raises(DeliveryRetryable):
            await senders.send(
                _channel("slack", {"webhook_url": f"http://127.0.0.1:{free_port()}/x"}),
                alert("o1", "p1"), "d")
    finally:
        await senders.close()


async def test_the_outbound_policy_refuses_an_internal_url_for_good(
        hub: Receivers, settings: ApiarySettings) -> None:
    receiver = Receiver()
    url = hub.add("internal", receiver)  # 127.0.0.1, not allow-listed in ``settings``
    senders = Senders(settings)
    try:
        with pytest.raises(DeliveryFailed) as failed:
            await senders.send(_channel("webhook", {"url": url, "secret": SECRET}),
                               alert("o1", "p1"), "d")
        assert not failed.value.retryable
        assert failed.value.context["reason"] == "loopback_address"
        with pytest.raises(DeliveryFailed) as internal:
            await senders.send(_channel("slack", {"webhook_url": "https://127.0.0.1/x"}),
                               alert("o1", "p1"), "d")
        assert internal.value.context["reason"] == "loopback_address"
        with pytest.raises(DeliveryFailed) as mail:  # a channel's own SMTP server too
            await senders.send(_channel("email", {"recipients": ["a@example.com"],
                                                  "smtp_url": "smtp://127.0.0.1:25"}),
                               alert("o1", "p1"), "d")
        assert not mail.value.retryable
    finally:
        await senders.close()
    assert receiver.all() == []


async def test_mail_goes_over_smtp_as_text_and_html(
        smtp: tuple[str, Mailbox], local: ApiarySettings) -> None:
    url, mailbox = smtp
    before = len(mailbox.received())
    message = alert("org1", "proj1", "critical")
    senders = Senders(_settings(local, notify_smtp_url=url))
    try:
        await senders.send(_channel("email", {"recipients": ["oncall@example.com",
                                                             "lead@example.com"]}),
                           message, "d-mail-1")
        # A channel's own server (allow-listed) works the same way.
        await senders.send(_channel("email", {"recipients": ["own@example.com"],
                                              "smtp_url": url}),
                           TestNotification(org_id="org1", test_id="t1"), "d-mail-2")
    finally:
        await senders.close()
    (to, mail), (to2, mail2) = mailbox.received()[before:]
    assert to == ["oncall@example.com", "lead@example.com"]
    assert str(mail["Subject"]).strip().startswith("[CRITICAL] Error rate")
    assert mail["X-Apiary-Delivery"] == "d-mail-1"
    assert mail["Message-ID"] == "<d-mail-1@apiary.notifications>"
    parts: dict[str, str] = {}
    for part in mail.walk():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            parts[part.get_content_type()] = payload.decode()
    assert "value 0.62 against threshold 0.5 over 60 s" in parts["text/plain"]
    assert f'href="{message.link}"' in parts["text/html"].replace("&amp;", "&")
    assert to2 == ["own@example.com"]
    assert str(mail2["Subject"]).strip().startswith("[test]")


async def test_without_a_mail_transport_mail_fails_for_good(local: ApiarySettings) -> None:
    senders = Senders(local)
    try:
        with pytest.raises(DeliveryFailed) as failed:
            await senders.send(_channel("email", {"recipients": ["a@example.com"]}),
                               alert("o1", "p1"), "d")
    finally:
        await senders.close()
    assert not failed.value.retryable


async def test_mail_goes_through_ses_when_configured(
        s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, local: ApiarySettings) -> None:
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "apiary-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "apiary-test-secret")
    ses = boto3.client("ses", region_name="eu-west-1", endpoint_url=s3_endpoint)
    ses.verify_email_identity(EmailAddress="alerts@example.com")
    sent_before = ses.get_send_quota()["SentLast24Hours"]
    settings = _settings(local, ses_region="eu-west-1", ses_endpoint_url=s3_endpoint)
    channel = _channel("email", {"recipients": ["oncall@example.com"],
                                 "from_address": "alerts@example.com"})
    senders = Senders(settings)
    try:
        await senders.send(channel, alert("org1", "p1", "warning"), "d-ses")
        assert ses.get_send_quota()["SentLast24Hours"] == sent_before + 1
        # SES refuses an unverified sender: for good, not retried.
        unverified = _channel("email", {"recipients": ["oncall@example.com"],
                                        "from_address": "nobody@example.org"})
        with pytest.raises(DeliveryFailed) as refused:
            await senders.send(unverified, alert("org1", "p1", "warning"), "d-ses-2")
        assert not refused.value.retryable
        assert "MessageRejected" in refused.value.message
    finally:
        await senders.close()


def test_retry_after_is_read_as_seconds_or_a_date() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT",
                               now=1445412470.0) == pytest.approx(10.0)
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None


def test_the_delivery_id_is_stable_and_differs_per_channel() -> None:
    assert delivery_id("alert.a.1.warning", "c1") == delivery_id("alert.a.1.warning", "c1")
    assert delivery_id("alert.a.1.warning", "c1") != delivery_id("alert.a.1.warning", "c2")
    assert delivery_id("alert.a.1.warning", "c1") != delivery_id("alert.a.1.critical", "c1")
