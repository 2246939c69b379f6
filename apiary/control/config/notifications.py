"""Notification channels of an org: email, Slack and signed webhooks, scoped to the org, a
workspace or a project, each taking some of the stages ``critical``, ``warning``,
``resolution``.

**Secrets.** A channel's secrets (an email channel's own SMTP URL, which may hold a
password; a Slack webhook URL; a webhook's URL and signing secret) are one JSON object
encrypted with the control plane's envelope (AES-256-GCM, bound to
``notification_channel:<id>``) in ``secrets_ciphertext``; they are never returned: reads
show ``…`` and the last four characters of a URL's host, or ``has_secret``. A webhook's
signing secret, when the caller gives none, is generated and returned once, by the create.

**Outbound policy.** Every URL passes :class:`~apiary.outbound.OutboundPolicy` when it is
written (an SMTP URL's host is judged as an https URL's would be); the data plane's notifier
checks again at each connection.

**Push.** Every create, update and delete adds a ``notification_channel`` entry to the
config log in the same transaction (:func:`~apiary.control.federation.
notification_channel_change`): full state, the secrets still encrypted in cpdb and opened
only into the message the federation stream sends to the data planes serving a project of
the org, which seal them with their own envelope. A test
(:func:`request_test`) adds a ``notification_test`` entry for one data plane serving a
project in the channel's scope: the control plane cannot reach a data plane's NATS, so that
data plane publishes the test message (``notifications.<org>.<project>``, restricted to the
channel) when it applies the entry. The test is accepted when the entry is committed
(202); it is sent when the data plane next follows the log.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from apiary.control._common import new_id
from apiary.control.db import NotificationChannel, Organization, Project, Workspace
from apiary.control.federation import notification_channel_change, notification_test_change
from apiary.control.service import ControlPlane
from apiary.errors import Conflict, InvalidRequest, NotFound, OutboundUrlRefused

TYPES = ("email", "slack", "webhook")
SEVERITIES = ("critical", "warning", "resolution")
SMTP_SCHEMES = ("smtp", "smtps", "smtp+starttls")
#: The secret fields of each type (encrypted, never returned).
SECRET_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("smtp_url",), "slack": ("webhook_url",), "webhook": ("url", "secret")}
#: Secret fields that are URLs (a hint of their host is shown).
_URL_FIELDS = ("smtp_url", "webhook_url", "url")
_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """A channel as a caller gives it (validated types, not yet checked values)."""

    name: str
    type: str
    config: dict[str, Any]
    scope_type: str
    scope_id: str
    severities: list[str]
    enabled: bool


@dataclass(frozen=True, slots=True)
class Created:
    """A new channel, and its generated signing secret (None: the caller gave one)."""

    channel: NotificationChannel
    generated_secret: str | None


def _context(channel_id: str) -> str:
    return f"notification_channel:{channel_id}"


def open_secrets(cp: ControlPlane, channel: NotificationChannel) -> dict[str, str]:
    """The channel's secrets in the clear (never to be returned by the API)."""
    raw = cp.envelope.decrypt(channel.secrets_ciphertext, context=_context(channel.id))
    value = orjson.loads(raw)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _seal(cp: ControlPlane, channel_id: str, values: dict[str, str]) -> str:
    return cp.envelope.encrypt(orjson.dumps(values), context=_context(channel_id))


def url_hint(url: str) -> str:
    """``…`` and the last four characters of ``url``'s host (all a read shows of it)."""
    host = urlsplit(url).hostname or ""
    return "…" + host[-4:]


def public_config(cp: ControlPlane, channel: NotificationChannel) -> dict[str, Any]:
    """What a read shows of the channel's config: the public fields, ``<field>_hint`` for a
    secret URL, ``has_secret`` for a webhook's signing secret."""
    out = dict(channel.config)
    values = open_secrets(cp, channel)
    for field in SECRET_FIELDS[channel.type]:
        if field in _URL_FIELDS:
            out[f"{field}_hint"] = url_hint(values[field]) if field in values else None
        else:
            out["has_secret"] = field in values
    return out


def _policy(cp: ControlPlane, url: str, field: str) -> str:
    """``cp.outbound.check_url``, whose refusal does not repeat the URL (it is a secret)."""
    try:
        return cp.outbound.check_url(url, field=field)
    except OutboundUrlRefused as exc:
        raise OutboundUrlRefused(exc.message, field=field,
                                 reason=exc.context.get("reason"),
                                 address=exc.context.get("address")) from None


def _check_url(cp: ControlPlane, url: str, field: str) -> str:
    if not isinstance(url, str) or not url or len(url) > 2000:
        raise InvalidRequest("must be a URL of at most 2000 characters", field=field)
    return _policy(cp, url, field)


def _check_smtp_url(cp: ControlPlane, url: str, field: str) -> str:
    """An SMTP URL (``smtp://``, ``smtps://``, ``smtp+starttls://``; user and password
    allowed) whose host passes the outbound policy as an https URL's host would."""
    if not isinstance(url, str) or not url or len(url) > 2000:
        raise InvalidRequest("must be a URL of at most 2000 characters", field=field)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidRequest("not an SMTP URL", field=field) from None
    if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
        raise InvalidRequest("must be an smtp://, smtp+starttls:// or smtps:// URL",
                             field=field)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    _policy(cp, f"https://{shown}" + (f":{port}" if port else "") + "/", field)
    return url


def _recipients(value: Any) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= 100:
        raise InvalidRequest("1 to 100 email addresses", field="config.recipients")
    for address in value:
        local, _, domain = str(address).partition("@")
        if (not isinstance(address, str) or not local or "." not in domain
                or len(address) > 320 or any(c in address for c in " \r\n<>,")):
            raise InvalidRequest(f"{address!r} is not an email address",
                                 field="config.recipients")
    return list(value)


def _split_config(cp: ControlPlane, kind: str, config: dict[str, Any],
                  previous: dict[str, str] | None) -> tuple[dict[str, Any], dict[str, str],
                                                            str | None]:
    """(public config, secrets, generated signing secret) of ``config`` for type ``kind``,
    checked. ``previous``: the secrets kept when an update leaves a webhook's secret out."""
    allowed = {"email": {"recipients", "smtp_url", "from_address"},
               "slack": {"webhook_url"}, "webhook": {"url", "secret"}}[kind]
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise InvalidRequest(f"a {kind} channel's config has no field {unknown[0]}",
                             field=f"config.{unknown[0]}")
    generated: str | None = None
    if kind == "email":
        public: dict[str, Any] = {"recipients": _recipients(config.get("recipients"))}
        sender = config.get("from_address")
        if sender is not None:
            if not isinstance(sender, str) or "@" not in sender or len(sender) > 320:
                raise InvalidRequest("not an email address", field="config.from_address")
            public["from_address"] = sender
        found = {}
        if config.get("smtp_url") is not None:
            found["smtp_url"] = _check_smtp_url(cp, config["smtp_url"], "config.smtp_url")
        return public, found, None
    if kind == "slack":
        if "webhook_url" not in config:
            raise InvalidRequest("a Slack channel needs its webhook_url",
                                 field="config.webhook_url")
        return {}, {"webhook_url": _check_url(cp, config["webhook_url"],
                                              "config.webhook_url")}, None
    if "url" not in config:
        raise InvalidRequest("a webhook channel needs its url", field="config.url")
    found = {"url": _check_url(cp, config["url"], "config.url")}
    secret = config.get("secret")
    if secret is None:
        if previous and "secret" in previous:
            secret = previous["secret"]
        else:
            secret = generated = "whsec_" + secrets.token_urlsafe(_SECRET_BYTES)
    if not isinstance(secret, str) or not 16 <= len(secret) <= 512:
        raise InvalidRequest("a signing secret has 16 to 512 characters",
                             field="config.secret")
    found["secret"] = secret
    return {}, found, generated


def _check_scope(db: Session, org_id: str, scope_type: str, scope_id: str) -> None:
    if scope_type == "org":
        if scope_id != org_id:
            raise InvalidRequest("an org scope is the channel's own org", field="scope")
        return
    node: Workspace | Project | None = (db.get(Workspace, scope_id) if scope_type == "workspace"
                                        else db.get(Project, scope_id))
    if node is None or node.org_id != org_id:
        raise InvalidRequest(f"no {scope_type} {scope_id} in this org",
                             field=f"scope.{scope_type}_id")


def _check_severities(severities: list[str]) -> list[str]:
    if not severities or any(s not in SEVERITIES for s in severities):
        raise InvalidRequest("severities are a non-empty subset of critical, warning, "
                             "resolution", field="severities")
    return sorted(set(severities))


def _check_name(db: Session, org_id: str, name: str, channel_id: str | None) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("a channel name must have 1 to 200 characters", field="name")
    statement = select(NotificationChannel.id).where(
        NotificationChannel.org_id == org_id, NotificationChannel.name == name)
    if channel_id is not None:
        statement = statement.where(NotificationChannel.id != channel_id)
    if db.execute(statement).first():
        raise Conflict("a notification channel with this name exists in the org", field="name")
    return name


def log_payload(channel: NotificationChannel) -> dict[str, Any]:
    """The channel as data planes take it (``Channel.from_plain``), its secrets still
    encrypted (``sealed_secrets``; opened into the message sent:
    :func:`~apiary.control.federation.wire_payload`), so cpdb's log never holds them in the
    clear either."""
    return {
        "id": channel.id, "org_id": channel.org_id, "name": channel.name,
        "type": channel.type, "scope": {"type": channel.scope_type, "id": channel.scope_id},
        "severities": list(channel.severities), "enabled": channel.enabled,
        "config": dict(channel.config), "sealed_secrets": channel.secrets_ciphertext,
    }


def _push(cp: ControlPlane, db: Session, channel: NotificationChannel, *,
          deleted: bool = False) -> None:
    db.add(notification_channel_change(
        channel, None if deleted else log_payload(channel), cp.now()))


def create_channel(cp: ControlPlane, db: Session, org: Organization, spec: ChannelSpec,
                   author: str | None) -> Created:
    """Create the channel and its config-log entry (durable together when the transaction
    commits)."""
    if spec.type not in TYPES:
        raise InvalidRequest("a channel's type is email, slack or webhook", field="type")
    name = _check_name(db, org.id, spec.name, None)
    _check_scope(db, org.id, spec.scope_type, spec.scope_id)
    severities = _check_severities(spec.severities)
    public, found, generated = _split_config(cp, spec.type, spec.config, None)
    channel_id = new_id()
    now = cp.now()
    channel = NotificationChannel(
        id=channel_id, org_id=org.id, name=name, type=spec.type, scope_type=spec.scope_type,
        scope_id=spec.scope_id, severities=severities, enabled=spec.enabled, config=public,
        secrets_ciphertext=_seal(cp, channel_id, found), created_by=author, created_at=now,
        updated_at=now)
    db.add(channel)
    db.flush()
    _push(cp, db, channel)
    return Created(channel, generated)


def get_channel(db: Session, org: Organization, channel_id: str) -> NotificationChannel:
    channel = db.get(NotificationChannel, channel_id)
    if channel is None or channel.org_id != org.id:
        raise NotFound("notification channel not found", channel_id=channel_id)
    return channel


def list_channels(db: Session, org: Organization) -> list[NotificationChannel]:
    return list(db.scalars(select(NotificationChannel).where(
        NotificationChannel.org_id == org.id).order_by(NotificationChannel.name)))


def update_channel(cp: ControlPlane, db: Session, channel: NotificationChannel,
                   changes: dict[str, Any]) -> NotificationChannel:
    """Apply ``changes`` (any of name, config, scope_type + scope_id, severities, enabled;
    a config replaces the whole config, except that a webhook's secret left out is kept)
    and log the new state."""
    if "name" in changes:
        channel.name = _check_name(db, channel.org_id, str(changes["name"]), channel.id)
    if "scope_type" in changes:
        _check_scope(db, channel.org_id, changes["scope_type"], changes["scope_id"])
        channel.scope_type, channel.scope_id = changes["scope_type"], changes["scope_id"]
    if "severities" in changes:
        channel.severities = _check_severities(list(changes["severities"]))
    if "enabled" in changes:
        channel.enabled = bool(changes["enabled"])
    if "config" in changes:
        public, found, _ = _split_config(cp, channel.type, dict(changes["config"]),
                                         open_secrets(cp, channel))
        channel.config = public
        channel.secrets_ciphertext = _seal(cp, channel.id, found)
    channel.updated_at = cp.now()
    db.flush()
    _push(cp, db, channel)
    return channel


def delete_channel(cp: ControlPlane, db: Session, channel: NotificationChannel) -> None:
    _push(cp, db, channel, deleted=True)
    db.delete(channel)


def _projects_in_scope(db: Session, channel: NotificationChannel) -> list[Project]:
    statement = select(Project).where(Project.org_id == channel.org_id,
                                      Project.data_plane_id.is_not(None))
    if channel.scope_type == "workspace":
        statement = statement.where(Project.workspace_id == channel.scope_id)
    elif channel.scope_type == "project":
        statement = statement.where(Project.id == channel.scope_id)
    return list(db.scalars(statement.order_by(Project.id)))


@dataclass(frozen=True, slots=True)
class TestRequest:
    """A test accepted: the data plane that will publish it, for which project."""

    __test__ = False  # not a pytest test class

    test_id: str
    data_plane_id: str
    project_id: str


def request_test(cp: ControlPlane, db: Session, channel: NotificationChannel,
                 author: str | None) -> TestRequest:
    """Ask the data plane serving the first project (by id) in the channel's scope to send
    it a test message (module docstring). :class:`~apiary.errors.Conflict` when no data
    plane serves a project in the scope (nobody could send it)."""
    projects = _projects_in_scope(db, channel)
    if not projects:
        raise Conflict("no data plane serves a project in this channel's scope, so none "
                       "can send the test; assign a project to a data plane first",
                       channel_id=channel.id)
    project = projects[0]
    assert project.data_plane_id is not None
    test_id = new_id()
    db.add(notification_test_change(test_id=test_id, channel=channel, project=project,
                                    data_plane_id=project.data_plane_id,
                                    requested_by=author, now=cp.now()))
    return TestRequest(test_id, project.data_plane_id, project.id)


__all__ = ["SECRET_FIELDS", "SEVERITIES", "TYPES", "ChannelSpec", "Created", "TestRequest",
           "create_channel", "delete_channel", "get_channel", "list_channels",
           "log_payload", "open_secrets", "public_config", "request_test",
           "update_channel", "url_hint"]
