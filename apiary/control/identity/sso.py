"""Single sign-on, independent of the protocol: providers per organization, the seam every
protocol implements, and provisioning of the users it vouches for.

:class:`SsoProtocol` is the seam: OIDC implements it now (:mod:`.oidc`); SAML 2.0 plugs in
later with the same two steps (send the browser to the IdP; turn what comes back into a
:class:`VerifiedIdentity`). Everything after that is shared, in :func:`provision`:

1. a user already linked to (provider, subject) is that user;
2. else a user whose email the provider *verified* is linked (never on an unverified
   email: that would let an IdP user take over an existing account);
3. else a new password-less user is created and linked;

and a user new to the organization gets the provider's default role in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from apiary.control._common import new_id
from apiary.control.authz import Access
from apiary.control.db import Membership, OidcProvider, User, UserIdentity
from apiary.control.identity.accounts import create_user, find_user_by_email
from apiary.control.memberships import is_org_member
from apiary.control.roles import check_can_grant, resolve_role, role_permissions
from apiary.control.service import ControlPlane
from apiary.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """Who the identity provider says the user is, after every check passed."""

    subject: str
    email: str | None
    email_verified: bool
    name: str | None


@dataclass(frozen=True, slots=True)
class SsoOutcome:
    """A completed SSO login: which provider, whom it vouched for, where to go next."""

    org_id: str
    provider_id: str
    identity: VerifiedIdentity
    return_to: str


class SsoProtocol(Protocol):
    """One SSO protocol. Implementations: :class:`apiary.control.identity.oidc.OidcLogin`."""

    def begin(self, cp: ControlPlane, provider_id: str, *, return_to: str) -> str:
        """Start a login; the URL to send the browser to (the IdP's login page)."""
        ...

    def complete(self, cp: ControlPlane, params: Mapping[str, str]) -> SsoOutcome:
        """Validate what the IdP sent back (query or form ``params``); raise
        :class:`AuthenticationFailed` unless every check passes."""
        ...


def safe_return_to(value: str | None) -> str:
    """A same-site path to land on after login: never another site (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def provision(cp: ControlPlane, db: Session, outcome: SsoOutcome) -> User:
    """The Apiary user of an SSO identity, linked and a member of the provider's org."""
    provider = db.get(OidcProvider, outcome.provider_id)
    if provider is None or not provider.enabled:
        raise AuthenticationFailed("this SSO provider is not enabled")
    identity = outcome.identity
    link = db.execute(select(UserIdentity).where(
        UserIdentity.provider_id == provider.id, UserIdentity.subject == identity.subject
    )).scalar_one_or_none()
    if link is not None:
        user = db.get(User, link.user_id)
        assert user is not None
    else:
        if not identity.email or not identity.email_verified:
            raise AuthenticationFailed(
                "the identity provider did not vouch for an email address (email_verified)"
            )
        existing = find_user_by_email(db, identity.email)
        user = existing or create_user(cp, db, email=identity.email, password=None,
                                       display_name=identity.name)
        db.add(UserIdentity(
            id=new_id(), user_id=user.id, org_id=provider.org_id, provider_id=provider.id,
            subject=identity.subject, email=identity.email, created_at=cp.now(),
        ))
    if user.disabled:
        raise AuthenticationFailed("this account is disabled")
    if not is_org_member(db, provider.org_id, user.id):
        db.add(Membership(
            id=new_id(), user_id=user.id, org_id=provider.org_id, scope_id=provider.org_id,
            role_id=provider.default_role_id, created_at=cp.now(),
        ))
    db.flush()
    return user


# --- provider configuration (per organization) --------------------------------------


def create_provider(
    cp: ControlPlane, db: Session, caller: Access, *, org_id: str, name: str, issuer: str,
    client_id: str, client_secret: str | None, scopes: str, default_role: str,
) -> OidcProvider:
    issuer = issuer.rstrip("/")
    if not issuer.startswith(("https://", "http://")):
        raise InvalidRequest("issuer must be an https:// URL", field="issuer")
    if "openid" not in scopes.split():
        raise InvalidRequest("scopes must include 'openid'", field="scopes")
    role = resolve_role(db, org_id, default_role)
    check_can_grant(caller, role_permissions(role))
    if db.execute(select(OidcProvider.id).where(
        OidcProvider.org_id == org_id, OidcProvider.issuer == issuer
    )).first():
        raise Conflict("this organization already has a provider for this issuer")
    provider_id = new_id()
    provider = OidcProvider(
        id=provider_id, org_id=org_id, name=name, issuer=issuer, client_id=client_id,
        client_secret_ciphertext=(
            cp.envelope.encrypt(client_secret.encode(), context=f"oidc:{provider_id}")
            if client_secret else None
        ),
        scopes=scopes, default_role_id=role.id, enabled=True, created_at=cp.now(),
    )
    db.add(provider)
    db.flush()
    return provider


def client_secret(cp: ControlPlane, provider: OidcProvider) -> str | None:
    if provider.client_secret_ciphertext is None:
        return None
    return cp.envelope.decrypt(
        provider.client_secret_ciphertext, context=f"oidc:{provider.id}"
    ).decode()


def get_provider(db: Session, org_id: str, provider_id: str) -> OidcProvider:
    provider = db.get(OidcProvider, provider_id)
    if provider is None or provider.org_id != org_id:
        raise NotFound("SSO provider not found")
    return provider


def list_providers(db: Session, org_id: str) -> list[OidcProvider]:
    return list(db.scalars(select(OidcProvider).where(OidcProvider.org_id == org_id)
                           .order_by(OidcProvider.name)))


def set_enabled(provider: OidcProvider, enabled: bool) -> None:
    provider.enabled = enabled


def delete_provider(db: Session, provider: OidcProvider) -> None:
    db.delete(provider)
