"""Email domains an organization claims for single sign-on, approved by an instance admin.

An organization (``org:manage``) claims a domain such as ``corp.example``. The claim does
nothing until an **instance admin** (``users.is_instance_admin``: the bootstrap admin, or
whoever ``apiary users set-instance-admin`` names) approves it, having checked that the
organization really owns the domain; at most one organization holds a domain approved.
Only then are the organization's identity providers trusted for addresses of that domain,
and only within that organization (:func:`apiary.control.identity.sso.provision`):

- an identity with such an address is linked automatically to an existing account only if
  that account's address is verified and it is already a member of the organization;
- a new account created for it starts verified.

Matching is exact on the address's domain (``a@sub.corp.example`` is not
``corp.example``): a subdomain is a domain of its own to claim.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from apiary.control._common import new_id
from apiary.control.db import OrgDomain, User
from apiary.control.service import ControlPlane
from apiary.errors import Conflict, InvalidRequest, NotFound, PermissionDenied

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def normalize_domain(domain: str) -> str:
    value = domain.strip().lower().rstrip(".")
    if not _DOMAIN.match(value):
        raise InvalidRequest("not a valid domain name (e.g. corp.example)", field="domain")
    return value


def domain_of(email: str) -> str:
    return email.rsplit("@", 1)[-1].strip().lower().rstrip(".")


def claim(cp: ControlPlane, db: Session, *, org_id: str, domain: str,
          created_by: str | None) -> OrgDomain:
    """Claim ``domain`` for ``org_id`` (pending until an instance admin approves it)."""
    value = normalize_domain(domain)
    if db.execute(select(OrgDomain.id).where(
        OrgDomain.org_id == org_id, OrgDomain.domain == value
    )).first():
        raise Conflict("this organization already claims this domain", field="domain")
    row = OrgDomain(id=new_id(), org_id=org_id, domain=value, created_by=created_by,
                    created_at=cp.now())
    db.add(row)
    db.flush()
    return row


def list_claims(db: Session, org_id: str | None = None, *,
                pending_only: bool = False) -> list[OrgDomain]:
    statement = select(OrgDomain).order_by(OrgDomain.domain, OrgDomain.created_at)
    if org_id is not None:
        statement = statement.where(OrgDomain.org_id == org_id)
    if pending_only:
        statement = statement.where(OrgDomain.approved_at.is_(None))
    return list(db.scalars(statement))


def get_claim(db: Session, claim_id: str, org_id: str | None = None) -> OrgDomain:
    row = db.get(OrgDomain, claim_id)
    if row is None or (org_id is not None and row.org_id != org_id):
        raise NotFound("domain claim not found")
    return row


def require_instance_admin(user: User | None) -> None:
    if user is None or not user.is_instance_admin:
        raise PermissionDenied("only an instance admin may approve domain claims")


def approve(cp: ControlPlane, db: Session, row: OrgDomain, *, approved_by: str) -> OrgDomain:
    """Approve a claim; 409 if another organization already holds the domain approved."""
    other = db.execute(select(OrgDomain.org_id).where(
        OrgDomain.domain == row.domain, OrgDomain.approved_at.is_not(None),
        OrgDomain.org_id != row.org_id,
    )).first()
    if other is not None:
        raise Conflict("another organization already holds this domain", field="domain")
    if row.approved_at is None:
        row.approved_at = cp.now()
        row.approved_by = approved_by
    db.flush()
    return row


def approved_for(db: Session, org_id: str, email: str) -> bool:
    """Whether ``org_id`` holds the domain of ``email`` claimed and approved."""
    return db.execute(select(OrgDomain.id).where(
        OrgDomain.org_id == org_id, OrgDomain.domain == domain_of(email),
        OrgDomain.approved_at.is_not(None),
    )).first() is not None
