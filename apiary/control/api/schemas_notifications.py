"""Request and response bodies of an org's notification channels
(``/cp/v1/orgs/{org_id}/notification-channels``; ``extra="forbid"`` on every request).

No response ever holds a channel's secret: URLs show as ``<field>_hint`` (``…`` and the last
four characters of the host), a webhook's signing secret as ``has_secret``; a generated
signing secret is returned once, as ``signing_secret`` of the create's response.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Severity = Literal["critical", "warning", "resolution"]
_ALL: tuple[Severity, ...] = ("critical", "warning", "resolution")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelScopeIn(_Request):
    """Exactly one of: ``{"org": true}`` (every project of the org), ``{"workspace_id"}``,
    ``{"project_id"}`` (within the org)."""

    org: Literal[True] | None = None
    workspace_id: str | None = Field(default=None, min_length=1, max_length=64)
    project_id: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _exactly_one(self) -> ChannelScopeIn:
        given = [v for v in (self.org, self.workspace_id, self.project_id) if v is not None]
        if len(given) != 1:
            raise ValueError("a scope is exactly one of org, workspace_id, project_id")
        return self

    def parts(self, org_id: str) -> tuple[str, str]:
        """(scope type, scope id)."""
        if self.workspace_id is not None:
            return "workspace", self.workspace_id
        if self.project_id is not None:
            return "project", self.project_id
        return "org", org_id


class ChannelCreate(_Request):
    name: str = Field(min_length=1, max_length=200)
    type: Literal["email", "slack", "webhook"]
    #: email: ``recipients``, optionally ``smtp_url`` (its own SMTP server) and
    #: ``from_address``; slack: ``webhook_url``; webhook: ``url`` and optionally ``secret``
    #: (generated when absent, and returned once).
    config: dict[str, Any]
    scope: ChannelScopeIn = Field(default_factory=lambda: ChannelScopeIn(org=True))
    severities: list[Severity] = Field(default_factory=lambda: list(_ALL), min_length=1)
    enabled: bool = True


class ChannelUpdate(_Request):
    """Any of the fields; ``config`` replaces the whole config (a webhook's ``secret`` left
    out is kept). The type never changes."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    config: dict[str, Any] | None = None
    scope: ChannelScopeIn | None = None
    severities: list[Severity] | None = Field(default=None, min_length=1)
    enabled: bool | None = None


class ChannelOut(BaseModel):
    id: str
    org_id: str
    name: str
    type: str
    #: ``{"org": true}``, ``{"workspace_id": ...}`` or ``{"project_id": ...}``.
    scope: dict[str, Any]
    severities: list[str]
    enabled: bool
    #: The public fields, ``<field>_hint`` for secret URLs, ``has_secret`` for a webhook.
    config: dict[str, Any]
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class ChannelCreated(ChannelOut):
    #: A webhook's signing secret when it was generated: shown this once, never again.
    signing_secret: str | None = None


class ChannelTestOut(BaseModel):
    test_id: str
    channel_id: str
    #: The data plane that publishes the test, and the project it is published for.
    data_plane_id: str
    project_id: str
