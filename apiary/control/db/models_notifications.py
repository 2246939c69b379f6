"""Notification channels: where an org's alert notifications go (email, Slack, webhooks).

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

from sqlalchemy import JSON, CheckConstraint, String, Text, UniqueConstraint
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
