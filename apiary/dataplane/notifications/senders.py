"""Sending one notification to one channel: email (SMTP or SES), Slack, signed webhooks.

:meth:`Senders.send` makes **one attempt** and either returns (the receiver accepted it: a
2xx, an SMTP server took the mail, SES returned a message id) or raises
:class:`~apiary.errors.DeliveryRetryable` (a later attempt may succeed: a connection error
or timeout, 408, 429, 5xx, an SMTP 4xx, SES throttling or 5xx; ``retry_after`` carries the
receiver's ``Retry-After``) or :class:`~apiary.errors.DeliveryFailed` (it will not: any
other 4xx, an SMTP 5xx, SES rejecting the mail, a URL the outbound policy refuses, no mail
transport configured). Retrying is the notifier's (:mod:`.service`).

Every delivery carries its **delivery id** (:func:`delivery_id`: a hash of the message id
and the channel id), the same on every attempt and after any redelivery: webhooks and Slack
get it as ``X-Apiary-Delivery``, mail as ``X-Apiary-Delivery`` and in its ``Message-ID``.

**Webhooks** receive the JSON body of :func:`webhook_body`, signed:
``X-Apiary-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the
channel's secret>`` (:func:`sign`; a receiver checks it with :func:`verify_signature`, which
``docs/alerts.md`` shows standalone). **Slack** receives a Block Kit message
(:func:`slack_message`). **Mail** is plain text and HTML (:func:`email_content`).

Every URL a channel names (a webhook, Slack's webhook, a channel's own SMTP server) follows
the outbound-URL policy (:mod:`apiary.outbound`, ``APIARY_OUTBOUND_ALLOWLIST``): checked
before each attempt and again at each connection, on the address then used. The
operator's own transports (``notify_smtp_url``, SES) are configuration, not user input.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import html
import json
import time
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import httpx

from apiary.dataplane.notifications.channels import (
    Channel,
    EmailConfig,
    SlackConfig,
    WebhookConfig,
)
from apiary.dataplane.notifications.message import AlertNotification, TestNotification
from apiary.errors import DeliveryFailed, DeliveryRetryable, OutboundUrlRefused
from apiary.mail import Mail, SesTransport, SmtpTransport
from apiary.outbound import OutboundPolicy
from apiary.settings import ApiarySettings

SIGNATURE_HEADER = "X-Apiary-Signature"
DELIVERY_HEADER = "X-Apiary-Delivery"
#: Statuses a later attempt may turn into a success.
RETRYABLE_STATUSES = frozenset({408, 429})
_USER_AGENT = "Apiary-Notifier/1"

Message = AlertNotification | TestNotification


def delivery_id(msg_id: str, channel_id: str) -> str:
    """The id of the delivery of message ``msg_id`` to channel ``channel_id``: the same on
    every attempt, whatever redeliveries happen (32 hex digits)."""
    return hashlib.sha256(f"{msg_id}\x00{channel_id}".encode()).hexdigest()[:32]


# --- what each receiver gets -----------------------------------------------------------


def webhook_body(message: Message) -> dict[str, Any]:
    """The JSON object a webhook receives: ``alert_id``, ``alert_name``, ``stage``,
    ``state``, ``value``, ``threshold``, ``window_s``, ``project_id``, ``fired_at``
    (ISO 8601), ``link``, plus ``kind`` (``alert`` or ``test``) and ``org_id``; a test has
    ``text`` and null alert fields."""
    fired_at = message.fired_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(message, AlertNotification):
        return {"kind": "alert", "alert_id": message.alert_id, "alert_name": message.alert_name,
                "stage": message.stage, "state": message.state, "value": message.value,
                "threshold": message.threshold, "window_s": message.window_s,
                "project_id": message.project_id, "org_id": message.org_id,
                "fired_at": fired_at, "link": message.link}
    return {"kind": "test", "alert_id": None, "alert_name": None, "stage": None,
            "state": None, "value": None, "threshold": None, "window_s": None,
            "project_id": message.project_id, "org_id": message.org_id,
            "fired_at": fired_at, "link": message.link, "text": message.text}


def sign(secret: bytes, body: bytes, t: int) -> str:
    """The ``X-Apiary-Signature`` value of ``body`` sent at unix second ``t``."""
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(secret: bytes, body: bytes, header: str, *, tolerance_s: float = 300,
                     now: float | None = None) -> bool:
    """Whether ``header`` (an ``X-Apiary-Signature``) signs ``body`` under ``secret`` and
    was made within ``tolerance_s`` of ``now``: what a receiver checks (constant time)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    expected = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def _headline(message: Message) -> str:
    if isinstance(message, AlertNotification):
        what = {"warning": "warning", "critical": "CRITICAL",
                "resolution": "resolved"}[message.stage]
        return f"[{what}] {message.alert_name}"
    return "[test] Apiary notification channel"


def _summary(message: Message) -> str:
    if isinstance(message, AlertNotification):
        return (f"value {_number(message.value)} against threshold "
                f"{_number(message.threshold)} over {message.window_s} s")
    return message.text


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(message: Message, delivery: str) -> dict[str, Any]:
    """The Block Kit message of a Slack incoming webhook: the alert and its stage, the value
    against the threshold, and a button to the matching events."""
    blocks: list[dict[str, Any]] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": _headline(message)[:150], "emoji": True}},
    ]
    if isinstance(message, AlertNotification):
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Stage*\n{message.stage}"},
            {"type": "mrkdwn", "text": f"*State*\n{message.state}"},
            {"type": "mrkdwn", "text": f"*Value*\n{_number(message.value)}"},
            {"type": "mrkdwn", "text": f"*Threshold*\n{_number(message.threshold)}"},
            {"type": "mrkdwn", "text": f"*Window*\n{message.window_s} s"},
            {"type": "mrkdwn", "text": f"*Project*\n{_slack_escape(message.project_id)}"},
        ]})
    else:
        blocks.append({"type": "section",
                       "text": {"type": "mrkdwn", "text": _slack_escape(message.text)}})
    if message.link:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "View matching events"},
             "url": message.link}]})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn",
         "text": f"fired {message.fired_at.isoformat()} · delivery {delivery}"}]})
    return {"text": _slack_escape(f"{_headline(message)}: {_summary(message)}"),
            "blocks": blocks}


def email_content(message: Message) -> tuple[str, str, str]:
    """Subject, plain text and HTML of the mail of ``message``."""
    subject = f"{_headline(message)}: {_summary(message)}"[:200]
    lines = [_headline(message), "", _summary(message)]
    if isinstance(message, AlertNotification):
        lines += ["", f"Stage: {message.stage}", f"State: {message.state}",
                  f"Project: {message.project_id}"]
    lines += [f"Fired at: {message.fired_at.isoformat()}"]
    if message.link:
        lines += ["", f"Matching events: {message.link}"]
    text = "\n".join(lines) + "\n"
    rows = "".join(f"<p>{html.escape(line)}</p>" for line in lines[2:] if line)
    link = (f'<p><a href="{html.escape(message.link, quote=True)}">View matching events</a>'
            "</p>" if message.link else "")
    body = (f"<html><body><h2>{html.escape(_headline(message))}</h2>{rows}{link}"
            "</body></html>")
    return subject, text, body


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); None if absent or not
    understood."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Senders:
    """The senders of every channel type, sharing one HTTP client (outbound policy) and one
    SES client. Close with :meth:`close`."""

    def __init__(self, settings: ApiarySettings, *, policy: OutboundPolicy | None = None
                 ) -> None:
        self._settings = settings
        self._policy = policy or OutboundPolicy.from_settings(settings)
        self._timeout = settings.notify_timeout_s
        self._http = self._policy.async_client(
            timeout=httpx.Timeout(self._timeout), headers={"User-Agent": _USER_AGENT})
        self._ses = (None if settings.ses_region is None else SesTransport(
            settings.ses_region, endpoint_url=settings.ses_endpoint_url, timeout=self._timeout))

    async def close(self) -> None:
        await self._http.aclose()

    async def send(self, channel: Channel, message: Message, delivery: str) -> None:
        """One attempt at delivering ``message`` to ``channel`` (module docstring)."""
        config = channel.config
        if isinstance(config, WebhookConfig):
            body = json.dumps(webhook_body(message), separators=(",", ":")).encode()
            signature = sign(config.secret.get_secret_value().encode(), body,
                             int(time.time()))
            await self._post(channel, config.url.get_secret_value(), body,
                             {SIGNATURE_HEADER: signature, DELIVERY_HEADER: delivery})
        elif isinstance(config, SlackConfig):
            body = json.dumps(slack_message(message, delivery)).encode()
            await self._post(channel, config.webhook_url.get_secret_value(), body,
                             {DELIVERY_HEADER: delivery})
        else:
            await self._email(channel, config, message, delivery)

    # -- HTTP ---------------------------------------------------------------------------

    async def _post(self, channel: Channel, url: str, body: bytes,
                    headers: dict[str, str]) -> None:
        context: dict[str, Any] = {"channel_id": channel.id, "channel_type": channel.type}
        try:
            await asyncio.to_thread(self._policy.check_url, url, field=f"{channel.type}.url")
        except OutboundUrlRefused as exc:
            raise DeliveryFailed(f"the channel's URL is refused: {exc.message}",
                                 reason=exc.context.get("reason"), **context) from None
        try:
            answer = await self._http.post(
                url, content=body, headers={"Content-Type": "application/json", **headers})
        except httpx.ConnectError as exc:
            refused = exc.__cause__
            if isinstance(refused, OutboundUrlRefused):
                raise DeliveryFailed(f"the channel's URL is refused: {refused.message}",
                                     reason=refused.context.get("reason"), **context) from None
            raise DeliveryRetryable(f"cannot connect: {exc}", **context) from None
        except httpx.TransportError as exc:
            raise DeliveryRetryable(f"{type(exc).__name__}: {exc}", **context) from None
        status = answer.status_code
        if 200 <= status < 300:
            return
        if status in RETRYABLE_STATUSES or status >= 500:
            raise DeliveryRetryable(
                f"the receiver answered {status}", status=status,
                retry_after=retry_after_seconds(answer.headers.get("Retry-After")), **context)
        raise DeliveryFailed(f"the receiver refused it with {status}", status=status,
                             **context)

    # -- mail ---------------------------------------------------------------------------

    async def _email(self, channel: Channel, config: EmailConfig, message: Message,
                     delivery: str) -> None:
        context: dict[str, Any] = {"channel_id": channel.id, "channel_type": channel.type}
        subject, text, html_body = email_content(message)
        sender = config.from_address or self._settings.notify_smtp_from
        if config.smtp_url is None and self._ses is not None:
            await asyncio.to_thread(self._ses.send, Mail(sender, config.recipients, subject,
                                                         text, html_body), **context)
            return
        if config.smtp_url is not None:
            url = config.smtp_url.get_secret_value()
            self._check_smtp(url, context)
            transport = SmtpTransport(url, timeout=self._timeout, addresses=self._policy)
        elif self._settings.notify_smtp_url is not None:
            transport = SmtpTransport(self._settings.notify_smtp_url.get_secret_value(),
                                      timeout=self._timeout)
        else:
            raise DeliveryFailed("no mail transport: set APIARY_NOTIFY_SMTP_URL or "
                                 "APIARY_SES_REGION, or give the channel an smtp_url", **context)
        mail = Mail(sender, config.recipients, subject, text, html_body,
                    headers=(("Message-ID", f"<{delivery}@apiary.notifications>"),
                             (DELIVERY_HEADER, delivery)))
        await asyncio.to_thread(transport.send, mail, **context)

    def _check_smtp(self, url: str, context: dict[str, Any]) -> None:
        """A channel's own SMTP server follows the outbound policy as an https URL would
        (``smtps``/``smtp+starttls``) or an http one (plain ``smtp``: allow-listed hosts
        only)."""
        parts = urlsplit(url)
        scheme = "http" if parts.scheme == "smtp" else "https"
        port = f":{parts.port}" if parts.port else ""
        try:
            self._policy.check_url(f"{scheme}://{parts.hostname or ''}{port}/",
                                   field="email.smtp_url")
        except OutboundUrlRefused as exc:
            raise DeliveryFailed(f"the channel's SMTP server is refused: {exc.message}",
                                 reason=exc.context.get("reason"), **context) from None


__all__ = ["DELIVERY_HEADER", "RETRYABLE_STATUSES", "SIGNATURE_HEADER", "Senders",
           "delivery_id", "email_content", "retry_after_seconds", "sign", "slack_message",
           "verify_signature", "webhook_body"]
