"""Identity tables: users, TOTP, recovery codes, login sessions, SSO providers and links.

Secrets are never stored in the clear: passwords as argon2id hashes; session tokens,
recovery codes, email-verification links, SSO browser binders and SSO MFA tickets as
SHA-256; TOTP secrets and OIDC client secrets encrypted with the envelope key
(:mod:`apiary.control.envelope`).
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
    # When the address was proven (a mailed link, the operator, or an IdP trusted for its
    # domain). None: the account owns nothing and nothing links to it.
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # May approve organizations' email-domain claims (the bootstrap admin, or via the CLI).
    is_instance_admin: Mapped[bool] = mapped_column(default=False)


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
    # SHA-256 of the random binder in the browser's HttpOnly cookie: the callback must come
    # from the browser that started the login (no login CSRF). None: refused.
    binder_hash: Mapped[str | None] = mapped_column(String(64))
    # Set for an explicit link started by a logged-in user: the identity joins this user.
    link_user_id: Mapped[str | None] = tenant_fk("users", nullable=True)


class SsoMfaTicket(Base):
    """An SSO login that still needs the account's second factor (single use, minutes)."""

    __tablename__ = "sso_mfa_tickets"

    ticket_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = tenant_fk("users")
    provider_id: Mapped[str] = tenant_fk("oidc_providers")
    return_to: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EmailVerification(Base):
    """A mailed link proving an address: stored as SHA-256, expiring, single use."""

    __tablename__ = "email_verifications"

    id: Mapped[str] = id_column()
    user_id: Mapped[str] = tenant_fk("users")
    email: Mapped[str] = mapped_column(String(320))  # the address the link was sent to
    purpose: Mapped[str] = mapped_column(String(16))  # signup | change
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OrgDomain(Base):
    """An email domain an organization claims. Once an instance admin approves it, the
    org's identity providers are trusted for that domain's addresses (auto-linking to the
    org's own verified members, verified new accounts)."""

    __tablename__ = "org_domains"
    __table_args__ = (UniqueConstraint("org_id", "domain"),)

    id: Mapped[str] = id_column()
    org_id: Mapped[str] = tenant_fk("organizations")
    domain: Mapped[str] = mapped_column(String(253), index=True)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    approved_by: Mapped[str | None] = mapped_column(String(64))
