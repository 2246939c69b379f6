"""Notification channels as the data plane sees them, and where it finds them.

A channel (:class:`Channel`) is an org's: ``email`` (recipients; an SMTP URL of its own, or
the data plane's ``notify_smtp_url`` / SES), ``slack`` (an incoming-webhook URL) or
``webhook`` (a URL and a signing secret). Its ``scope`` is the org, a workspace or a project,
and ``severities`` the stages it takes (``warning``, ``critical``, ``resolution``). A
notification goes to every enabled channel of its org whose scope contains its project and
that takes its stage (:func:`matching`); a message naming ``channel_ids`` (a test, a
replayed dead letter) goes to those channels of its org only.

Channels reach the data plane by the control plane's configuration push (federation): its
applier writes one entry per channel into the JetStream key-value bucket
``federation-config`` (:data:`CONFIG_BUCKET`) with :func:`channel_entry`, under the key
``notification_channel.<org_id>.<channel_id>``, and deletes the key when the channel is
deleted. The entry's secrets (an SMTP URL, which may hold a password; Slack's webhook URL;
a webhook's URL and signing secret) are sealed with the data plane's envelope
(:mod:`apiary.dataplane.evaluation.proxy.envelope`: a fresh data key each, wrapped by
``APIARY_DP_ENVELOPE_KEY``, bound to the channel and field as associated data), so the
bucket never holds a plaintext secret; :class:`KvChannelDirectory` opens them when it reads
the entry. :class:`InMemoryChannelDirectory` is the same directory for tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Literal, Protocol

import orjson
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from apiary.dataplane.evaluation.proxy.envelope import Envelope, Sealed
from apiary.dataplane.notifications.message import (
    AlertNotification,
    Stage,
    TestNotification,
)
from apiary.dataplane.replica.federation_state import live_entries
from apiary.errors import ConfigurationError, InvalidRequest

log = logging.getLogger("apiary.notifications")

#: The federation's configuration bucket (written by ``apiary.dataplane.federation``).
CONFIG_BUCKET = "federation-config"
#: The kind of a channel's entries in it (the first token of their keys).
CHANNEL_KIND = "notification_channel"
_TOKEN = r"^[A-Za-z0-9_-]{1,128}$"

ChannelType = Literal["email", "slack", "webhook"]


class ChannelScope(BaseModel):
    """Which projects a channel hears about: an org's, a workspace's or one project."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["org", "workspace", "project"]
    id: str = Field(pattern=_TOKEN)


class EmailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    recipients: tuple[str, ...] = Field(min_length=1, max_length=100)
    #: An SMTP server of the channel's own (``smtp://``, ``smtp+starttls://``, ``smtps://``);
    #: it follows the outbound-URL policy. None: the data plane's transport.
    smtp_url: SecretStr | None = None
    from_address: str | None = Field(default=None, max_length=320)

    @field_validator("recipients")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            local, _, domain = address.partition("@")
            if not local or "." not in domain or any(c in address for c in " \r\n<>,"):
                raise ValueError(f"{address!r} is not an email address")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
                ("smtp://", "smtps://", "smtp+starttls://")):
            raise ValueError("must be an smtp://, smtp+starttls:// or smtps:// URL")
        return value


class SlackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook_url: SecretStr


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: SecretStr
    #: The HMAC-SHA256 key of ``X-Apiary-Signature``.
    secret: SecretStr = Field(min_length=16)


ChannelConfig = EmailConfig | SlackConfig | WebhookConfig
_CONFIGS: dict[str, type[BaseModel]] = {
    "email": EmailConfig, "slack": SlackConfig, "webhook": WebhookConfig}
#: The fields of each type's config that are secrets (sealed in the bucket).
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("smtp_url",), "slack": ("webhook_url",), "webhook": ("url", "secret")}


class Channel(BaseModel):
    """One channel, secrets in the clear (held in memory only; ``SecretStr`` hides them from
    reprs and logs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_TOKEN)
    org_id: str = Field(pattern=_TOKEN)
    name: str = Field(default="", max_length=256)
    type: ChannelType
    scope: ChannelScope
    severities: frozenset[Stage] = Field(min_length=1)
    enabled: bool = True
    config: ChannelConfig

    @classmethod
    def from_plain(cls, payload: dict[str, Any]) -> Channel:
        """A channel from the control plane's form (``config`` a plain object whose shape
        its ``type`` says; other top-level fields are ignored);
        :class:`~apiary.errors.InvalidRequest` naming what is wrong."""
        # Fields the data plane does not use (``deleted``, timestamps) are left out.
        payload = {k: v for k, v in payload.items() if k in cls.model_fields}
        config_model = _CONFIGS.get(str(payload.get("type")))
        if config_model is None:
            raise InvalidRequest("a channel's type is email, slack or webhook", field="type")
        prefix: tuple[str, ...] = ("config",)
        try:
            config = config_model.model_validate(payload.get("config") or {})
            prefix = ()
            return cls.model_validate({**payload, "config": config})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = (*prefix, *(str(p) for p in first["loc"]))
            raise InvalidRequest(f"not a notification channel: {first['msg']}",
                                 field=".".join(where)) from None

    def scope_contains(self, message: AlertNotification | TestNotification) -> bool:
        if message.org_id != self.org_id:
            return False
        if self.scope.type == "org":
            return self.scope.id == message.org_id
        if self.scope.type == "workspace":
            return message.workspace_id == self.scope.id
        return message.project_id == self.scope.id

    def receives(self, message: AlertNotification | TestNotification) -> bool:
        """Whether ``message`` goes to this channel (module docstring)."""
        if not self.enabled or message.org_id != self.org_id:
            return False
        if message.channel_ids is not None:
            return self.id in message.channel_ids
        if not isinstance(message, AlertNotification):
            return False  # a test names its channel
        return message.stage in self.severities and self.scope_contains(message)


def matching(channels: Iterable[Channel],
             message: AlertNotification | TestNotification) -> list[Channel]:
    """The channels of ``channels`` that receive ``message``, in id order."""
    return sorted((c for c in channels if c.receives(message)), key=lambda c: c.id)


class ChannelDirectory(Protocol):
    """Where the notifier finds the channels a message goes to."""

    async def channels_for(
            self, message: AlertNotification | TestNotification) -> list[Channel]:
        """The channels that receive ``message`` (:func:`matching`)."""
        ...


class InMemoryChannelDirectory:
    """Channels held in memory (tests, and a data plane without federation)."""

    def __init__(self, channels: Iterable[Channel] = ()) -> None:
        self._channels = {c.id: c for c in channels}

    def put(self, channel: Channel) -> None:
        self._channels[channel.id] = channel

    def remove(self, channel_id: str) -> None:
        self._channels.pop(channel_id, None)

    async def channels_for(
            self, message: AlertNotification | TestNotification) -> list[Channel]:
        return matching(self._channels.values(), message)


# --- the federation bucket's entries ---------------------------------------------------


def channel_key(org_id: str, channel_id: str) -> str:
    """The key of a channel's entry in :data:`CONFIG_BUCKET`."""
    return f"{CHANNEL_KIND}.{org_id}.{channel_id}"


def _context(channel: Channel | dict[str, Any], field: str) -> str:
    org = channel.org_id if isinstance(channel, Channel) else channel["org_id"]
    ident = channel.id if isinstance(channel, Channel) else channel["id"]
    return f"{CHANNEL_KIND}:{org}:{ident}:{field}"


def channel_entry(payload: dict[str, Any], envelope: Envelope) -> tuple[str, bytes]:
    """The key and value of the channel ``payload`` (the control plane's form, secrets in
    the clear: :meth:`Channel.from_plain`) in :data:`CONFIG_BUCKET`: the same object with
    every secret moved out of ``config`` into ``sealed.<field>`` (``{"key_id",
    "wrapped_key", "ciphertext"}``) under ``envelope``. Raises
    :class:`~apiary.errors.InvalidRequest` if ``payload`` is not a channel."""
    channel = Channel.from_plain(payload)
    config = channel.config.model_dump(mode="python", exclude_none=True)
    sealed: dict[str, dict[str, str]] = {}
    for field in SECRET_FIELDS[channel.type]:
        secret = config.pop(field, None)
        if secret is None:
            continue
        box = envelope.seal(secret.get_secret_value().encode(),
                            context=_context(channel, field))
        sealed[field] = {"key_id": box.key_id, "wrapped_key": box.wrapped_key,
                         "ciphertext": box.ciphertext}
    value = {**channel.model_dump(mode="json", exclude={"config"}),
             "severities": sorted(channel.severities), "config": config, "sealed": sealed}
    return channel_key(channel.org_id, channel.id), orjson.dumps(value)


def open_entry(value: bytes, envelope: Envelope) -> Channel:
    """The channel of a bucket entry written by :func:`channel_entry`; raises
    :class:`~apiary.errors.ConfigurationError` if a secret does not open under
    ``envelope``, :class:`~apiary.errors.InvalidRequest` if it is not a channel."""
    try:
        raw = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidRequest("a channel entry is not JSON") from None
    if not isinstance(raw, dict):
        raise InvalidRequest("a channel entry is not an object")
    config = dict(raw.get("config") or {})
    for field, box in (raw.get("sealed") or {}).items():
        sealed = Sealed(key_id=str(box["key_id"]), wrapped_key=str(box["wrapped_key"]),
                        ciphertext=str(box["ciphertext"]))
        config[field] = envelope.open(sealed, context=_context(raw, field)).decode()
    return Channel.from_plain({**raw, "config": config})


class KvChannelDirectory:
    """Channels read from the federation's bucket (module docstring) at each message: a
    channel created, changed or deleted at the control plane takes effect with the next
    notification after the data plane applied it. A missing bucket (no federation yet)
    holds no channel. An entry that does not open (another envelope key) or does not parse
    is logged and skipped: the org's other channels still receive the message."""

    def __init__(self, js: JetStreamContext, envelope: Envelope, *,
                 bucket: str = CONFIG_BUCKET) -> None:
        self._js = js
        self._envelope = envelope
        self._bucket = bucket
        self._kv: KeyValue | None = None
        #: Entries skipped because they did not open or parse (counted for stats).
        self.unreadable = 0

    async def _open(self) -> KeyValue | None:
        if self._kv is None:
            try:
                self._kv = await self._js.key_value(self._bucket)
            except (BucketNotFoundError, NotFoundError):
                return None
        return self._kv

    async def channels(self, org_id: str) -> list[Channel]:
        """Every channel of ``org_id`` in the bucket."""
        kv = await self._open()
        if kv is None:
            return []
        found: list[Channel] = []
        for key, value in await live_entries(kv, f"{CHANNEL_KIND}.{org_id}.>"):
            try:
                found.append(open_entry(value, self._envelope))
            except (ConfigurationError, InvalidRequest) as exc:
                self.unreadable += 1
                log.error("notification channel entry skipped",
                          extra={"key": key, "error": str(exc)})
        return found

    async def channels_for(
            self, message: AlertNotification | TestNotification) -> list[Channel]:
        return matching(await self.channels(message.org_id), message)


__all__ = ["CHANNEL_KIND", "CONFIG_BUCKET", "SECRET_FIELDS", "Channel", "ChannelConfig",
           "ChannelDirectory", "ChannelScope", "ChannelType", "EmailConfig",
           "InMemoryChannelDirectory", "KvChannelDirectory", "SlackConfig", "WebhookConfig",
           "channel_entry", "channel_key", "matching", "open_entry"]
