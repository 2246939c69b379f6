"""Email verification: who controls an address, proven by a mailed link.

A link carries ``apev_`` + 256 random bits; cpdb stores only its SHA-256, the address it
was sent to, its purpose (``signup``: the account's own address; ``change``: a new address
that replaces the old one only once proven), an expiry (``cp_email_verification_ttl_s``)
and ``used_at``. A link works once (a conditional update on ``used_at``), before it
expires, and only for the address it was sent to; a new link for the same purpose voids the
older ones. Tampering with a link yields a token whose hash matches nothing.

Until its address is verified an account **owns nothing**: it cannot create an
organization, accept an invitation (an invitation's token is also known to whoever sent it,
so it proves nothing about the address) or obtain a token, and no SSO identity links to
it. It reserves nothing either: an unverified account with no memberships and no linked
identities (a would-be *pre-hijacker*) gives its address up to whoever proves it -- a new
sign-up, a verified email change, or an identity provider trusted for the domain -- and is
deleted with its password and sessions (:func:`release_address`).

Verified accounts: the bootstrap admin and users the operator creates (``apiary users
create``), accounts whose mailed link was used, and accounts created by SSO for a domain
the organization claimed and an instance admin approved (:mod:`.domains`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session

from apiary.control._common import new_id, new_token, normalize_email, token_hash
from apiary.control.db import EmailVerification, Membership, User, UserIdentity
from apiary.control.identity import mail
from apiary.control.identity.accounts import validate_email
from apiary.control.service import ControlPlane
from apiary.errors import (
    Conflict,
    EmailNotVerified,
    Gone,
    InvalidRequest,
    NotFound,
    ReauthenticationRequired,
)

log = logging.getLogger(__name__)

VERIFICATION_PREFIX = "apev_"
VERIFY_PATH = "/v1/auth/email/verify"
#: The web UI's page the mailed link opens (it POSTs the token to :data:`VERIFY_PATH`; a
#: control plane without the UI built redirects it to the API's own page).
UI_VERIFY_PATH = "/verify-email"
Purpose = Literal["signup", "change"]


@dataclass(frozen=True, slots=True)
class IssuedLink:
    """A verification link, shown once (mailed, or printed for an operator)."""

    user_id: str
    email: str
    purpose: Purpose
    token: str
    link: str
    expires_at: datetime


def is_verified(user: User) -> bool:
    return user.email_verified_at is not None


def require_verified(user: User, doing: str) -> None:
    """Refuse ``doing`` (e.g. "create an organization") for an unverified account (403)."""
    if not is_verified(user):
        raise EmailNotVerified(
            f"verify your email address before you {doing}: follow the link mailed to "
            f"{user.email} (POST /v1/me/email/verification sends a new one)"
        )


def require_may_hold_tokens(user: User) -> None:
    """Tokens go to verified accounts, and to SSO-only accounts (no password: their one
    way in is their organization's IdP, which vouched for them within that organization);
    never to an unverified password account (403)."""
    if user.password_hash is not None:
        require_verified(user, "get tokens")


def require_recent_login(cp: ControlPlane, authenticated_at: datetime | None, doing: str) -> None:
    """Refuse ``doing`` (linking an identity, changing the address: ways to keep or take an
    account) to a session that proved its credentials more than ``cp_recent_auth_s`` ago,
    so that a stolen, older session cannot (401 ``reauthentication_required``)."""
    window = cp.settings.cp_recent_auth_s
    if authenticated_at is None or cp.now() - authenticated_at > timedelta(seconds=window):
        raise ReauthenticationRequired(
            f"to {doing} log in within the last {window} s: re-authenticate (POST "
            "/v1/auth/reauthenticate, or log in or sign in with SSO again) and retry")


def link_of(cp: ControlPlane, token: str) -> str:
    return f"{cp.issuer}{UI_VERIFY_PATH}?token={token}"


def issue(
    cp: ControlPlane, db: Session, user: User, *, email: str, purpose: Purpose
) -> IssuedLink:
    """A new single-use link proving ``email`` for ``user``; older unused links of the same
    purpose stop working."""
    now = cp.now()
    db.execute(delete(EmailVerification).where(
        EmailVerification.user_id == user.id, EmailVerification.purpose == purpose,
        EmailVerification.used_at.is_(None),
    ))
    token = new_token(VERIFICATION_PREFIX)
    expires_at = now + timedelta(seconds=cp.settings.cp_email_verification_ttl_s)
    db.add(EmailVerification(
        id=new_id(), user_id=user.id, email=email, purpose=purpose,
        token_hash=token_hash(token), created_at=now, expires_at=expires_at,
    ))
    db.flush()
    return IssuedLink(user.id, email, purpose, token, link_of(cp, token), expires_at)


def queue_mail(cp: ControlPlane, db: Session, issued: IssuedLink) -> bool:
    """Queue the mail carrying the link in ``db``'s transaction, the one that stored the link
    (:mod:`.mail`: sent by the control plane's outbox, with retries, once the transaction
    commits; nothing is sent if it rolls back). True when a mail transport is configured;
    without one the mail stays queued and only that is logged, never the link (a secret):
    an operator prints a link with ``apiary users verify-link``."""
    if issued.purpose == "signup":
        subject = "Confirm your email address for Apiary"
        intro = "Someone (hopefully you) created an Apiary account with this address."
    else:
        subject = "Confirm your new email address for Apiary"
        intro = "Someone (hopefully you) asked to use this address for an Apiary account."
    hours = max(1, cp.settings.cp_email_verification_ttl_s // 3600)
    ask = f"To confirm it, open this link within {hours} hour(s):"
    outro = "The link works once. If this was not you, ignore this mail."
    text = f"{intro}\n\n{ask}\n\n{issued.link}\n\n{outro}\n"
    page = mail.html_body(subject, [intro, ask], link=issued.link,
                          link_text="Confirm this address", after=[issued.link, outro])
    mail.queue(cp, db, kind="verification", to=issued.email,
               content=mail.MailContent(subject=subject, text=text, html=page))
    configured = mail.configured(cp.settings)
    if not configured:
        log.info("email verification pending for user %s (%s); no mail transport is "
                 "configured, the mail stays queued: an operator can print the link with "
                 "`apiary users verify-link`", issued.user_id, issued.purpose)
    return configured


def confirm(cp: ControlPlane, db: Session, token: str) -> User:
    """Use a link: the account's address (``signup``) is verified, or (``change``) the new
    address replaces the old one, verified. 400 for a link that matches nothing (forged or
    tampered), 410 for a used or expired one, 409 if a verified account took the address
    meanwhile."""
    token = token.strip()
    if not token.startswith(VERIFICATION_PREFIX) or len(token) > 200:
        raise InvalidRequest("this verification link is not valid", field="token")
    row = db.execute(
        select(EmailVerification).where(EmailVerification.token_hash == token_hash(token))
    ).scalar_one_or_none()
    if row is None:
        raise InvalidRequest("this verification link is not valid", field="token")
    now = cp.now()
    if row.used_at is not None:
        raise Gone("this verification link was already used")
    if row.expires_at <= now:
        raise Gone("this verification link has expired; ask for a new one")
    # Conditional update: two concurrent uses of one link cannot both succeed.
    used = db.execute(
        update(EmailVerification)
        .where(EmailVerification.id == row.id, EmailVerification.used_at.is_(None))
        .values(used_at=now)
    )
    if not used.rowcount:  # type: ignore[attr-defined]
        raise Gone("this verification link was already used")
    user = db.get(User, row.user_id, with_for_update=True)
    if user is None:
        raise Gone("the account of this link no longer exists")
    if row.purpose == "signup" and normalize_email(user.email) != normalize_email(row.email):
        raise Gone("the account's address changed since this link was sent")
    # The address is proven: this account holds it now (an SSO-only account starts to), and
    # an unverified account that held it gives it up.
    release_address(cp, db, row.email, keep_user_id=user.id)
    user.email = row.email
    user.email_normalized = normalize_email(row.email)
    user.email_verified_at = now
    if row.purpose == "change":
        # A change link proves the new address only: pending sign-up links of the old one
        # must not verify the new one later.
        db.execute(delete(EmailVerification).where(
            EmailVerification.user_id == user.id, EmailVerification.used_at.is_(None)
        ))
    user.updated_at = now
    db.flush()
    return user


def sso_only_key(provider_id: str, subject: str) -> str:
    """What an SSO-only account holds instead of its address in ``email_normalized`` (the
    column that makes addresses unique): never an address (no ``@``), unique per identity."""
    return f"sso-only:{provider_id}:{token_hash(subject)}"


def create_sso_only_user(
    cp: ControlPlane, db: Session, *, email: str, display_name: str | None, provider_id: str,
    subject: str,
) -> User:
    """A password-less, unverified account for an identity whose address nobody proved to
    Apiary. It reserves no address: it cannot block a sign-up or another org's IdP, and
    finding accounts by email never finds it. Verifying its address by mail makes it an
    ordinary account holding the address (:func:`confirm`)."""
    email = validate_email(email)
    now = cp.now()
    user = User(
        id=new_id(), email=email, email_normalized=sso_only_key(provider_id, subject),
        display_name=display_name, password_hash=None, disabled=False, failed_logins=0,
        created_at=now, updated_at=now, email_verified_at=None, is_instance_admin=False,
    )
    db.add(user)
    db.flush()
    return user


def mark_verified(cp: ControlPlane, user: User) -> None:
    if user.email_verified_at is None:
        user.email_verified_at = cp.now()


def release_address(
    cp: ControlPlane, db: Session, email: str, *, keep_user_id: str | None = None
) -> None:
    """Make ``email`` free for someone who proved it (or is about to be trusted with it).

    A verified holder keeps it (409). An unverified holder that owns nothing -- no
    membership, no linked identity -- is deleted, with its password and sessions: a
    pre-hijacker's account never survives the real owner's arrival. An unverified holder
    with memberships or identities (an SSO-only account of an organization) keeps it (409:
    it can verify by mail, then link).
    """
    holder = db.execute(
        select(User).where(User.email_normalized == normalize_email(email))
    ).scalar_one_or_none()
    if holder is None or holder.id == keep_user_id:
        return
    if is_verified(holder):
        raise Conflict("an account with this email already exists", field="email")
    owns = db.execute(select(
        exists().where(Membership.user_id == holder.id)
        | exists().where(UserIdentity.user_id == holder.id)
    )).scalar()
    if owns:
        raise Conflict("an unverified account with this email belongs to an organization's "
                       "single sign-on; verify it by mail, then link from its settings",
                       field="email")
    log.info("unverified account %s gave up its address to its proven owner", holder.id)
    db.delete(holder)
    db.flush()


def operator_link(cp: ControlPlane, db: Session, email: str) -> IssuedLink:
    """A fresh link for ``email`` for an operator to hand over (``apiary users
    verify-link``): the sign-up link of the unverified account with that address, or a new
    link for a pending change to that address."""
    user = db.execute(
        select(User).where(User.email_normalized == normalize_email(email))
    ).scalar_one_or_none()
    if user is not None and not is_verified(user):
        return issue(cp, db, user, email=user.email, purpose="signup")
    sso_only = db.execute(select(User).where(
        func.lower(User.email) == normalize_email(email), User.email_verified_at.is_(None),
        User.email_normalized.startswith("sso-only:"),
    )).scalars().all()
    if len(sso_only) > 1:
        raise Conflict(f"several organizations' SSO-only accounts use {email}: each can ask "
                       "for its link with POST /v1/me/email/verification")
    if sso_only:
        return issue(cp, db, sso_only[0], email=sso_only[0].email, purpose="signup")
    pending = db.execute(
        select(EmailVerification)
        .where(EmailVerification.purpose == "change", EmailVerification.used_at.is_(None))
        .order_by(EmailVerification.created_at.desc())
    ).scalars().all()
    for row in pending:
        if normalize_email(row.email) == normalize_email(email):
            owner = db.get(User, row.user_id)
            if owner is not None:
                return issue(cp, db, owner, email=row.email, purpose="change")
    if user is not None:
        raise Conflict(f"{email} is already verified")
    raise NotFound(f"no account or pending email change for {email}")
