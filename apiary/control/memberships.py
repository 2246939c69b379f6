"""Membership changes: who has which role where, and the rules that keep an org governable.

- A membership is a role on one node (org, workspace or project). Adding one below the
  organization needs the user to belong to the organization already (new people come in
  through :mod:`apiary.control.invitations`).
- Nobody grants, changes or removes a role with more permissions than they hold there.
- An organization always keeps at least one owner (409 otherwise). Concurrent changes are
  serialized on the organization's row, so two admins cannot remove the last two owners.
- Removing someone's organization membership removes all their roles in it.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from apiary.control._common import new_id
from apiary.control.authz import Access, Resource
from apiary.control.db import Membership, Organization, Role
from apiary.control.roles import check_can_grant, resolve_role, role_permissions
from apiary.control.service import ControlPlane
from apiary.errors import Conflict, NotFound


def resource_of_membership(membership: Membership) -> Resource:
    return Resource(membership.org_id, membership.workspace_id, membership.project_id)


def get_membership(db: Session, org_id: str, membership_id: str) -> Membership:
    membership = db.get(Membership, membership_id)
    if membership is None or membership.org_id != org_id:
        raise NotFound("membership not found")
    return membership


def list_memberships(db: Session, org_id: str) -> list[tuple[Membership, Role]]:
    return list(db.execute(
        select(Membership, Role).join(Role, Role.id == Membership.role_id)
        .where(Membership.org_id == org_id).order_by(Membership.created_at)
    ))


def is_org_member(db: Session, org_id: str, user_id: str) -> bool:
    return db.execute(
        select(Membership.id).where(Membership.org_id == org_id, Membership.user_id == user_id)
        .limit(1)
    ).first() is not None


def add_membership(
    cp: ControlPlane, db: Session, caller: Access, resource: Resource, *, user_id: str,
    role_name: str,
) -> Membership:
    """Give a user of the organization a role on ``resource`` (409 if they have one there)."""
    role = resolve_role(db, resource.org_id, role_name)
    check_can_grant(caller, role_permissions(role))
    if resource.kind != "organization" and not is_org_member(db, resource.org_id, user_id):
        raise NotFound("no such user in this organization; invite them first")
    return _insert(cp, db, resource, user_id, role)


def _insert(
    cp: ControlPlane, db: Session, resource: Resource, user_id: str, role: Role
) -> Membership:
    scope_id = resource.path()[0]
    if db.execute(select(Membership.id).where(
        Membership.user_id == user_id, Membership.scope_id == scope_id
    )).first():
        raise Conflict(f"the user already has a role on this {resource.kind}")
    membership = Membership(
        id=new_id(), user_id=user_id, org_id=resource.org_id,
        workspace_id=resource.workspace_id, project_id=resource.project_id,
        scope_id=scope_id, role_id=role.id, created_at=cp.now(),
    )
    db.add(membership)
    db.flush()
    return membership


def grant_from_invitation(
    cp: ControlPlane, db: Session, resource: Resource, user_id: str, role: Role
) -> Membership:
    """The membership an accepted invitation creates (already authorized when issued)."""
    return _insert(cp, db, resource, user_id, role)


def change_role(
    db: Session, caller: Access, membership: Membership, role_name: str
) -> Membership:
    current = db.get(Role, membership.role_id)
    assert current is not None
    new = resolve_role(db, membership.org_id, role_name)
    check_can_grant(caller, role_permissions(current) | role_permissions(new))
    if current.id == "owner" and new.id != "owner":
        _ensure_other_owner(db, membership)
    membership.role_id = new.id
    return membership


def remove_membership(db: Session, caller: Access, membership: Membership) -> None:
    role = db.get(Role, membership.role_id)
    assert role is not None
    check_can_grant(caller, role_permissions(role))
    if role.id == "owner":
        _ensure_other_owner(db, membership)
    if membership.workspace_id is None:  # leaving the organization: all roles in it go
        db.execute(delete(Membership).where(
            Membership.org_id == membership.org_id, Membership.user_id == membership.user_id
        ))
    else:
        db.delete(membership)


def _ensure_other_owner(db: Session, membership: Membership) -> None:
    if membership.workspace_id is not None:
        return  # only organization-level ownership is guarded
    # Lock the organization's row: concurrent owner changes take turns.
    db.execute(select(Organization.id).where(Organization.id == membership.org_id)
               .with_for_update())
    owners = db.execute(select(func.count()).select_from(Membership).where(
        Membership.org_id == membership.org_id, Membership.workspace_id.is_(None),
        Membership.role_id == "owner", Membership.id != membership.id,
    )).scalar_one()
    if owners == 0:
        raise Conflict("an organization must keep at least one owner")
