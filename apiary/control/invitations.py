"""Invitations: a single-use token that gives its holder a role on an org, workspace or
project.

The token (``apinv_`` + 256 random bits) is returned once to the inviter and mailed to the
invited address (the mail is queued in the transaction that creates the invitation, and
sent by the control plane's outbox once a mail transport is configured:
:mod:`apiary.control.identity.mail`); only its hash is stored. It is accepted by
the logged-in user whose email it names, at most once, before it expires (410 after), and
only once that user's address is verified: the inviter also holds the token, so accepting
it cannot prove the address (otherwise an org admin could sign up as the invitee and
"verify" the address with their own invitation).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from apiary.control._common import new_id, new_token, normalize_email, token_hash
from apiary.control.authz import Access, Resource
from apiary.control.db import Invitation, Membership, Role, User
from apiary.control.identity import mail
from apiary.control.identity.accounts import validate_email
from apiary.control.identity.verification import require_verified
from apiary.control.memberships import grant_from_invitation
from apiary.control.roles import check_can_grant, resolve_role, role_permissions
from apiary.control.service import ControlPlane
from apiary.errors import Gone, NotFound, PermissionDenied

INVITATION_PREFIX = "apinv_"


@dataclass(frozen=True, slots=True)
class IssuedInvitation:
    invitation: Invitation
    role: Role
    token: str


def create_invitation(
    cp: ControlPlane, db: Session, caller: Access, resource: Resource, *, email: str,
    role_name: str, invited_by: str | None,
) -> IssuedInvitation:
    email = validate_email(email)
    role = resolve_role(db, resource.org_id, role_name)
    check_can_grant(caller, role_permissions(role))
    token = new_token(INVITATION_PREFIX)
    now = cp.now()
    invitation = Invitation(
        id=new_id(), org_id=resource.org_id, workspace_id=resource.workspace_id,
        project_id=resource.project_id, email=normalize_email(email), role_id=role.id,
        token_hash=token_hash(token), invited_by=invited_by, created_at=now,
        expires_at=now + timedelta(seconds=cp.settings.cp_invitation_ttl_s),
    )
    db.add(invitation)
    db.flush()
    issued = IssuedInvitation(invitation, role, token)
    _queue_mail(cp, db, issued)
    return issued


def _queue_mail(cp: ControlPlane, db: Session, issued: IssuedInvitation) -> None:
    """Queue the invitation's mail to the invited address in the transaction that creates
    the invitation (never logs the token)."""
    subject = "You are invited to Apiary"
    intro = "You were invited to an organization on Apiary."
    ask = ("Log in (or sign up and confirm this address) with this email address, then "
           "accept the invitation with this token before "
           f"{issued.invitation.expires_at:%Y-%m-%d %H:%M} UTC:")
    where = f"(POST {cp.issuer}/v1/invitations/accept)"
    text = f"{intro}\n\n{ask}\n\n{issued.token}\n\n{where}\n"
    page = mail.html_body(subject, [intro, ask], code=issued.token, after=[where])
    mail.queue(cp, db, kind="invitation", to=issued.invitation.email,
               content=mail.MailContent(subject=subject, text=text, html=page))


def list_invitations(db: Session, org_id: str) -> list[tuple[Invitation, Role]]:
    return list(db.execute(
        select(Invitation, Role).join(Role, Role.id == Invitation.role_id)
        .where(Invitation.org_id == org_id).order_by(Invitation.created_at)
    ))


def get_invitation(db: Session, org_id: str, invitation_id: str) -> Invitation:
    invitation = db.get(Invitation, invitation_id)
    if invitation is None or invitation.org_id != org_id:
        raise NotFound("invitation not found")
    return invitation


def revoke_invitation(cp: ControlPlane, invitation: Invitation) -> None:
    if invitation.accepted_at is None and invitation.revoked_at is None:
        invitation.revoked_at = cp.now()


def accept_invitation(cp: ControlPlane, db: Session, user: User, token: str) -> Membership:
    """Turn the invitation into a membership of ``user``; single use, before expiry."""
    invitation = db.execute(
        select(Invitation).where(Invitation.token_hash == token_hash(token)).with_for_update()
    ).scalar_one_or_none()
    if invitation is None:
        raise NotFound("invitation not found")
    if invitation.accepted_at is not None or invitation.revoked_at is not None:
        raise Gone("this invitation was already used or withdrawn")
    if invitation.expires_at <= cp.now():
        raise Gone("this invitation has expired; ask for a new one")
    if normalize_email(user.email) != invitation.email:
        raise PermissionDenied("this invitation was sent to another email address")
    # The inviter saw the token too, so accepting it proves nothing about the address: the
    # account must have proven it (a pre-hijacker's unverified account gets nothing).
    require_verified(user, "accept an invitation")
    role = db.get(Role, invitation.role_id)
    assert role is not None
    resource = Resource(invitation.org_id, invitation.workspace_id, invitation.project_id)
    membership = grant_from_invitation(cp, db, resource, user.id, role)
    invitation.accepted_at = cp.now()
    invitation.accepted_by = user.id
    return membership
