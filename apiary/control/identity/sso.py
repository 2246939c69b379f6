"""Single sign-on, independent of the protocol: providers per organization, the seam every
protocol implements, and provisioning of the users it vouches for.

:class:`SsoProtocol` is the seam: OIDC implements it now (:mod:`.oidc`); SAML 2.0 plugs in
later with the same two steps (send the browser to the IdP; turn what comes back into a
:class:`VerifiedIdentity`). Everything after that is shared, in :func:`provision`. An
organization's IdP speaks for that organization only, so an identity (provider, subject)
joins an existing account in exactly two ways:

1. **an explicit link**, made by the logged-in (and verified) account holder, who started
   the login from ``POST /v1/me/identities/oidc/{provider}/link/start``;
2. **automatically, within one organization**, when the address's domain is claimed by the
   provider's organization *and approved by an instance admin* (:mod:`.domains`), the IdP
   says the address is verified, and the account is verified and already a member of that
   organization.

Otherwise a login whose (IdP-verified) email belongs to an existing verified account is
refused with 409 ("link it from your account settings"): never a link across organizations,
never to an unverified account. An unknown identity gets a new password-less account: with
a verified address when the domain is the organization's (claimed and approved; an
unverified pre-hijacker's account holding the address is then deleted), else an SSO-only
account whose address nobody proved to Apiary: it reserves no address (another org's
SSO-only account, or a sign-up, may use the same one), and it acts only in the provider's
organization until it verifies its address by mail. A user new to the organization gets
the provider's default role in it.

An account with TOTP enrolled still gives its second factor after SSO
(:func:`needs_second_factor`), unless its organization trusts the IdP's MFA
(``trust_idp_mfa``) and the ID token's ``amr`` names a second factor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from apiary.control._common import new_id, new_token, token_hash
from apiary.control.authz import Access
from apiary.control.db import (
    Membership,
    OidcProvider,
    Organization,
    OrgDomain,
    SsoMfaTicket,
    User,
    UserIdentity,
)
from apiary.control.identity import domains, totp, verification
from apiary.control.identity.accounts import create_user, find_user_by_email
from apiary.control.identity.sessions import IssuedSession, create_session
from apiary.control.memberships import is_org_member
from apiary.control.roles import check_can_grant, resolve_role, role_permissions
from apiary.control.service import ControlPlane
from apiary.errors import ApiaryError, AuthenticationFailed, Conflict, InvalidRequest, NotFound
from apiary.outbound import OutboundPolicy

#: ``amr`` values (RFC 8176) that count as a second factor when the org trusts its IdP's MFA.
MFA_AMR_VALUES = frozenset({"mfa", "otp", "hwk", "sc"})
MFA_TICKET_PREFIX = "apmt_"
MFA_TICKET_TTL = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """Who the identity provider says the user is, after every check passed."""

    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    amr: tuple[str, ...] = ()  # how the IdP authenticated the user (RFC 8176)


@dataclass(frozen=True, slots=True)
class SsoOutcome:
    """A completed SSO login: which provider, whom it vouched for, where to go next, and
    (for an explicit link) the logged-in account that started it."""

    org_id: str
    provider_id: str
    identity: VerifiedIdentity
    return_to: str
    link_user_id: str | None = None


class SsoProtocol(Protocol):
    """One SSO protocol. Implementations: :class:`apiary.control.identity.oidc.OidcLogin`."""

    def begin(self, cp: ControlPlane, provider_id: str, *, return_to: str, binder: str,
              link_user_id: str | None = None) -> str:
        """Start a login bound to the browser holding ``binder`` (an HttpOnly cookie); the
        URL to send the browser to (the IdP's login page). ``link_user_id``: an explicit
        link of the identity to that (logged-in) account."""
        ...

    def complete(self, cp: ControlPlane, params: Mapping[str, str], *,
                 binder: str | None) -> SsoOutcome:
        """Validate what the IdP sent back (query or form ``params``) in the browser that
        holds ``binder``; raise :class:`AuthenticationFailed` unless every check passes."""
        ...


def safe_return_to(value: str | None) -> str:
    """A same-site path to land on after login: never another site (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def provision(cp: ControlPlane, db: Session, outcome: SsoOutcome) -> User:
    """The Apiary user of an SSO identity, linked and a member of the provider's org.

    Raises 409 when the address belongs to an account the identity may not join (see the
    module docstring), 401 when the IdP vouches for no verified address of a new identity.
    """
    provider = db.get(OidcProvider, outcome.provider_id)
    if provider is None or not provider.enabled:
        raise AuthenticationFailed("this SSO provider is not enabled")
    if outcome.link_user_id is not None:
        return link_identity(cp, db, provider, outcome)
    identity = outcome.identity
    link = db.execute(select(UserIdentity).where(
        UserIdentity.provider_id == provider.id, UserIdentity.subject == identity.subject
    )).scalar_one_or_none()
    if link is not None:
        user = db.get(User, link.user_id)
        assert user is not None
    else:
        user = _account_for_new_identity(cp, db, provider, identity)
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


def _account_for_new_identity(
    cp: ControlPlane, db: Session, provider: OidcProvider, identity: VerifiedIdentity
) -> User:
    if not identity.email or not identity.email_verified:
        raise AuthenticationFailed(
            "the identity provider did not vouch for an email address (email_verified)"
        )
    trusted = domains.approved_for(db, provider.org_id, identity.email)
    existing = find_user_by_email(db, identity.email)
    if existing is not None and verification.is_verified(existing):
        if trusted and is_org_member(db, provider.org_id, existing.id):
            return existing  # the org's own member, on the org's own approved domain
        raise Conflict(
            "an Apiary account with this email already exists and this identity is not "
            "linked to it: log in to that account and link it from your account settings "
            f"(POST /v1/me/identities/oidc/{provider.id}/link/start)",
            field="email",
        )
    if not trusted:
        # Nobody proved this address to Apiary (the org's IdP speaks for its own org only):
        # an SSO-only account that reserves no address, usable in this org only.
        return verification.create_sso_only_user(
            cp, db, email=identity.email, display_name=identity.name,
            provider_id=provider.id, subject=identity.subject)
    if existing is not None:
        # Unverified: it owns nothing and nothing links to it. The IdP is trusted for this
        # domain, so a pre-hijacker's account gives the address up (and is deleted).
        verification.release_address(cp, db, identity.email)
    user = create_user(cp, db, email=identity.email, password=None,
                       display_name=identity.name)
    verification.mark_verified(cp, user)
    return user


def link_identity(
    cp: ControlPlane, db: Session, provider: OidcProvider, outcome: SsoOutcome
) -> User:
    """An explicit link: the identity joins the account that started the login."""
    user = db.get(User, outcome.link_user_id)
    if user is None or user.disabled:
        raise AuthenticationFailed("the account that started this link no longer exists")
    verification.require_verified(user, "link a single sign-on identity")
    identity = outcome.identity
    link = db.execute(select(UserIdentity).where(
        UserIdentity.provider_id == provider.id, UserIdentity.subject == identity.subject
    )).scalar_one_or_none()
    if link is not None:
        if link.user_id != user.id:
            raise Conflict("this identity is already linked to another account")
        return user
    db.add(UserIdentity(
        id=new_id(), user_id=user.id, org_id=provider.org_id, provider_id=provider.id,
        subject=identity.subject, email=identity.email, created_at=cp.now(),
    ))
    db.flush()
    return user


def list_identities(db: Session, user_id: str) -> list[tuple[UserIdentity, OidcProvider]]:
    rows = db.execute(
        select(UserIdentity, OidcProvider)
        .join(OidcProvider, OidcProvider.id == UserIdentity.provider_id)
        .where(UserIdentity.user_id == user_id).order_by(UserIdentity.created_at)
    )
    return [(link, provider) for link, provider in rows]


def unlink_identity(db: Session, user: User, identity_id: str) -> None:
    """Remove one of the user's links; refused (409) if it is the account's only way in."""
    link = db.get(UserIdentity, identity_id)
    if link is None or link.user_id != user.id:
        raise NotFound("linked identity not found")
    others = db.execute(select(UserIdentity.id).where(
        UserIdentity.user_id == user.id, UserIdentity.id != link.id
    )).first()
    if user.password_hash is None and others is None:
        raise Conflict("this is the account's only way to log in (it has no password)")
    db.delete(link)


# --- the second factor after SSO -----------------------------------------------------


def needs_second_factor(
    db: Session, user: User, provider: OidcProvider, identity: VerifiedIdentity
) -> bool:
    """Whether this SSO login must still be completed with the account's TOTP: yes when it
    is enrolled, unless the org trusts its IdP's MFA and ``amr`` names a second factor."""
    if not totp.is_enrolled(db, user.id):
        return False
    org = db.get(Organization, provider.org_id)
    trusted = org is not None and org.trust_idp_mfa
    return not (trusted and MFA_AMR_VALUES.intersection(identity.amr))


def open_mfa_ticket(
    cp: ControlPlane, db: Session, user: User, provider_id: str, return_to: str
) -> str:
    """A single-use ticket (stored hashed, ``MFA_TICKET_TTL``) for the browser to finish
    this SSO login with a TOTP or recovery code; returned once, for an HttpOnly cookie."""
    now = cp.now()
    db.execute(delete(SsoMfaTicket).where(SsoMfaTicket.expires_at <= now))
    ticket = new_token(MFA_TICKET_PREFIX)
    db.add(SsoMfaTicket(
        ticket_hash=token_hash(ticket), user_id=user.id, provider_id=provider_id,
        return_to=return_to, created_at=now, expires_at=now + MFA_TICKET_TTL,
    ))
    db.flush()
    return ticket


def finish_mfa(
    cp: ControlPlane, ticket: str | None, *, totp_code: str | None,
    recovery_code: str | None,
) -> IssuedSession:
    """Check the second factor of a pending SSO login and open its session; the ticket is
    spent on success. Wrong codes go through :func:`totp.verify_code` /
    :func:`totp.use_recovery_code`, so their attempt counting applies here too."""
    if not ticket:
        raise AuthenticationFailed("no SSO login is waiting for a second factor here "
                                   "(the MFA ticket cookie is missing); log in again")
    outcome: IssuedSession | ApiaryError
    with cp.transaction() as db:
        row = db.get(SsoMfaTicket, token_hash(ticket), with_for_update=True)
        if row is None:
            raise AuthenticationFailed("this SSO login is unknown or already finished; "
                                       "log in again")
        if row.expires_at <= cp.now():
            db.delete(row)
            outcome = AuthenticationFailed("the SSO login waited too long for its second "
                                           "factor; log in again")
        else:
            outcome = _check_second_factor(cp, db, row, totp_code, recovery_code)
    if isinstance(outcome, ApiaryError):
        raise outcome  # after commit: the expired ticket's deletion and counters persist
    return outcome


def _check_second_factor(
    cp: ControlPlane, db: Session, row: SsoMfaTicket, totp_code: str | None,
    recovery_code: str | None,
) -> IssuedSession | ApiaryError:
    user = db.get(User, row.user_id)
    if user is None or user.disabled:
        db.delete(row)
        return AuthenticationFailed("this account is disabled")
    if totp_code:
        ok, method = totp.verify_code(cp, db, user.id, totp_code), "oidc+totp"
    elif recovery_code:
        ok, method = totp.use_recovery_code(cp, db, user.id, recovery_code), "oidc+recovery_code"
    else:
        return InvalidRequest("send totp_code or recovery_code", field="totp_code")
    if not ok:
        return AuthenticationFailed("the TOTP or recovery code is not valid")
    db.delete(row)
    return create_session(cp, db, user, method)


# --- provider configuration (per organization) --------------------------------------


def create_provider(
    cp: ControlPlane, db: Session, caller: Access, *, org_id: str, name: str, issuer: str,
    client_id: str, client_secret: str | None, scopes: str, default_role: str,
) -> OidcProvider:
    issuer = issuer.rstrip("/")
    if not issuer.startswith(("https://", "http://")):
        raise InvalidRequest("issuer must be an https:// URL", field="issuer")
    # The control plane will call the issuer: it must pass the outbound-URL policy (https,
    # no internal address unless the operator allow-listed it). Checked again at each use.
    OutboundPolicy.from_settings(cp.settings).check_url(issuer, field="issuer")
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


def provider_for_domain(db: Session, domain: str) -> OidcProvider | None:
    """The enabled provider (first by name) of the organization that holds ``domain``
    claimed and approved (at most one organization does), or None."""
    return db.scalars(
        select(OidcProvider)
        .join(OrgDomain, OrgDomain.org_id == OidcProvider.org_id)
        .where(OrgDomain.domain == domain, OrgDomain.approved_at.is_not(None),
               OidcProvider.enabled.is_(True))
        .order_by(OidcProvider.name, OidcProvider.id)
    ).first()


def list_providers(db: Session, org_id: str) -> list[OidcProvider]:
    return list(db.scalars(select(OidcProvider).where(OidcProvider.org_id == org_id)
                           .order_by(OidcProvider.name)))


def set_enabled(provider: OidcProvider, enabled: bool) -> None:
    provider.enabled = enabled


def delete_provider(db: Session, provider: OidcProvider) -> None:
    db.delete(provider)
