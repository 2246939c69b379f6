"""Tenancy tables: organizations → workspaces → projects, roles, memberships, invitations,
API keys, and the trust material shared with data planes (signing keys, data planes).

Every row that belongs to a tenant carries ``org_id`` (and its workspace and project ids
where it lives below the organization), so every query can be scoped by tenant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from apiary.control.db._base import Base, UTCDateTime, id_column, tenant_fk


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Accept an IdP's asserted MFA (its ``amr`` claim) instead of asking SSO users for
    # their Apiary TOTP code. Off by default.
    trust_idp_mfa: Mapped[bool] = mapped_column(default=False)


class Workspace(Base):
    __tablename__ = "workspaces"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = tenant_fk("organizations")
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = tenant_fk("organizations")
    workspace_id: Mapped[str] = tenant_fk("workspaces")
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The federated data plane that serves the project (None: any legacy data plane).
    data_plane_id: Mapped[str | None] = mapped_column(
        String(200), ForeignKey("data_planes.id", ondelete="SET NULL"), index=True)


class Role(Base):
    """A named permission set. Built-ins have ``org_id`` NULL and their name as id; their
    permissions come from :data:`apiary.control.permissions.BUILTIN_ROLES`, not this row."""

    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[str] = id_column()
    org_id: Mapped[str | None] = tenant_fk("organizations", nullable=True)
    name: Mapped[str] = mapped_column(String(100))
    permissions: Mapped[list[str]] = mapped_column()
    builtin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Membership(Base):
    """A user's role on one node: the organization itself, a workspace or a project.

    ``scope_id`` is the id of that node (unique per user, so one role per node); the
    workspace and project columns say which kind of node it is.
    """

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "scope_id"),)

    id: Mapped[str] = id_column()
    user_id: Mapped[str] = tenant_fk("users")
    org_id: Mapped[str] = tenant_fk("organizations")
    workspace_id: Mapped[str | None] = tenant_fk("workspaces", nullable=True)
    project_id: Mapped[str | None] = tenant_fk("projects", nullable=True)
    scope_id: Mapped[str] = mapped_column(String(64))
    role_id: Mapped[str] = mapped_column(String(64), ForeignKey("roles.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Invitation(Base):
    __tablename__ = "invitations"

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = tenant_fk("organizations")
    workspace_id: Mapped[str | None] = tenant_fk("workspaces", nullable=True)
    project_id: Mapped[str | None] = tenant_fk("projects", nullable=True)
    email: Mapped[str] = mapped_column(String(320))
    role_id: Mapped[str] = mapped_column(String(64), ForeignKey("roles.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    accepted_by: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiKey(Base):
    """A project key (``project_id`` set) or workspace key. The id is the key's public
    24-character part; only a SHA-256 of the secret part is stored."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("scope IN ('project', 'workspace')", name="scope"),
    )

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = tenant_fk("organizations")
    workspace_id: Mapped[str] = tenant_fk("workspaces")
    project_id: Mapped[str | None] = tenant_fk("projects", nullable=True)
    scope: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(64))
    permissions: Mapped[list[str]] = mapped_column()
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SigningKey(Base):
    """An ES256 key pair of the token signer. States: next (published, not yet signing),
    active (signing), retired (published until ``retire_after``, then dropped)."""

    __tablename__ = "signing_keys"
    __table_args__ = (
        CheckConstraint("state IN ('next', 'active', 'retired')", name="state"),
    )

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    private_key_ciphertext: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column()
    state: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retire_after: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DataPlane(Base):
    """A registered data plane: its id is the ``aud`` of the tokens issued for it. A data
    plane dedicated to one organization (``org_id`` set) gets tokens of that org only.

    A *legacy* data plane (``apiary data-planes register``) is a bare audience: no key,
    status ``active``. A *federated* one (``apiary data-planes create``) starts ``pending``
    with a one-time bootstrap token (only its SHA-256 here), becomes ``active`` when it
    registers its ECDSA P-256 public key, and ``revoked`` for good. During a key rotation
    the previous key stays accepted until the data plane connects with the new one.
    """

    __tablename__ = "data_planes"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'active', 'revoked')", name="status"),
    )

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2000))
    org_id: Mapped[str | None] = tenant_fk("organizations", nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    federated: Mapped[bool] = mapped_column(default=False, server_default=false())
    public_jwk: Mapped[dict[str, Any] | None] = mapped_column()
    key_thumbprint: Mapped[str | None] = mapped_column(String(64))
    previous_public_jwk: Mapped[dict[str, Any] | None] = mapped_column()
    previous_key_thumbprint: Mapped[str | None] = mapped_column(String(64))
    bootstrap_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    bootstrap_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    bootstrap_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    connected: Mapped[bool] = mapped_column(default=False, server_default=false())
    draining: Mapped[bool] = mapped_column(default=False, server_default=false())
    #: New projects are assigned to this data plane (at most one is marked; migration 0008).
    serves_new_projects: Mapped[bool] = mapped_column(default=False, server_default=false())
    apiary_version: Mapped[str | None] = mapped_column(String(64))
    versions: Mapped[dict[str, Any] | None] = mapped_column()
    last_health: Mapped[dict[str, Any] | None] = mapped_column()
    # The highest config-log version the data plane acknowledged as applied durably.
    applied_config_version: Mapped[int | None] = mapped_column(BigInteger)
