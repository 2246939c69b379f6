"""Notification channels: where an org's alert notifications go (email, Slack, webhooks);
alert activity (transitions and delivery outcomes reported by data planes); the control
plane's outgoing mail (invitations, email verification).

A channel belongs to an org and is scoped to the org, one of its workspaces or one of its
projects (``scope_type``/``scope_id``). Its public configuration (email recipients, a
from address) is ``config``; its secrets (an SMTP URL, which may hold a password; a Slack
webhook URL; a webhook's URL and signing secret) are one JSON object encrypted with the
control plane's envelope (AES-256-GCM, bound to ``notification_channel:<id>``) in
``secrets_ciphertext``, never stored in the clear.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from apiary.control.db._base import Base, UTCDateTime, id_column, tenant_fk


class NotificationChannel(Base):
    __tablename__ = "notification_channels"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        CheckConstraint("type IN ('email', 'slack', 'webhook')", name="type"),
        CheckConstraint("scope_type IN ('org', 'workspace', 'project')", name="scope_type"),
    )

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = tenant_fk("organizations")
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    scope_type: Mapped[str] = mapped_column(String(16))
    scope_id: Mapped[str] = mapped_column(String(64))
    severities: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    secrets_ciphertext: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AlertEvent(Base):
    """One event of an alert's activity, reported by the data plane that evaluates it: a
    ``transition`` (``stage`` warning/critical/resolution, the ``state`` after it, the
    measured ``value`` against the stage's ``threshold``, whether the alert was ``muted``)
    or a ``delivery`` (one channel's ``outcome``). ``id`` is the data plane's stable event
    id, so a report sent twice is stored once."""

    __tablename__ = "alert_events"
    __table_args__ = (
        CheckConstraint("kind IN ('transition', 'delivery')", name="kind"),
        Index("ix_alert_events_alert_id_at", "alert_id", "at"),
    )

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    org_id: Mapped[str] = tenant_fk("organizations")
    project_id: Mapped[str] = tenant_fk("projects")
    alert_id: Mapped[str] = mapped_column(String(64))
    data_plane_id: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[str | None] = mapped_column(String(16))
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    window_end: Mapped[int | None] = mapped_column(BigInteger)
    muted: Mapped[bool] = mapped_column(default=False, server_default=false())
    channel_id: Mapped[str | None] = mapped_column(String(64))
    channel_type: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)
    #: When it happened, by the data plane's clock.
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OutgoingMail(Base):
    """A mail the control plane sends (an invitation, an email verification): written in
    the transaction that creates what it announces, sent with retries until ``sent_at``
    or ``failed_at``. The message (subject and bodies; it holds a secret link) is encrypted
    with the control plane's envelope in ``message_ciphertext``."""

    __tablename__ = "outgoing_mail"
    __table_args__ = (
        Index("ix_outgoing_mail_pending", "sent_at", "failed_at", "next_attempt_at"),
    )

    id: Mapped[str] = id_column()
    kind: Mapped[str] = mapped_column(String(32))
    to_address: Mapped[str] = mapped_column(String(320))
    message_ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(1000))
