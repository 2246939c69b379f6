"""Identity tables: users, TOTP, recovery codes, login sessions, SSO providers and links.

Secrets are never stored in the clear: passwords as argon2id hashes, session tokens and
recovery codes as SHA-256, TOTP secrets and OIDC client secrets encrypted with the
envelope key (:mod:`apiary.control.envelope`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from apiary.control.db._base import Base, UTCDateTime, id_column, tenant_fk


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = id_column()
    email: Mapped[str] = mapped_column(String(320))
    # Lower-cased email: uniqueness is case-insensitive, identically on both databases.
    email_normalized: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200))  # None: SSO-only account
    disabled: Mapped[bool] = mapped_column(default=False)
    failed_logins: Mapped[int] = mapped_column(default=0)
    last_failed_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TotpCredential(Base):
    """A user's TOTP secret (encrypted). Unconfirmed until a first code is verified."""

    __tablename__ = "totp"

    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The last accepted 30-second step: a code is accepted once, never replayed.
    last_used_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    id: Mapped[str] = id_column()
    user_id: Mapped[str] = tenant_fk("users")
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UserSession(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = id_column()
    user_id: Mapped[str] = tenant_fk("users")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    auth_method: Mapped[str] = mapped_column(String(32))  # password | password+totp | oidc ...
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OidcProvider(Base):
    """An organization's OpenID Connect identity provider."""

    __tablename__ = "oidc_providers"
    __table_args__ = (UniqueConstraint("org_id", "issuer"),)

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = tenant_fk("organizations")
    name: Mapped[str] = mapped_column(String(200))
    issuer: Mapped[str] = mapped_column(String(2000))
    client_id: Mapped[str] = mapped_column(String(500))
    client_secret_ciphertext: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(String(500))
    # Role given to users the provider brings into the organization for the first time.
    default_role_id: Mapped[str] = mapped_column(String(64), ForeignKey("roles.id"))
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class UserIdentity(Base):
    """A link between a user and their subject at an SSO provider."""

    __tablename__ = "user_identities"
    __table_args__ = (UniqueConstraint("provider_id", "subject"),)

    id: Mapped[str] = id_column()
    user_id: Mapped[str] = tenant_fk("users")
    org_id: Mapped[str] = tenant_fk("organizations")
    provider_id: Mapped[str] = tenant_fk("oidc_providers")
    subject: Mapped[str] = mapped_column(String(500))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SsoLoginState(Base):
    """An SSO login in flight: what the callback must find (single use, minutes-long)."""

    __tablename__ = "sso_login_states"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider_id: Mapped[str] = tenant_fk("oidc_providers")
    org_id: Mapped[str] = tenant_fk("organizations")
    nonce: Mapped[str] = mapped_column(String(200))
    code_verifier: Mapped[str] = mapped_column(String(200))
    return_to: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
