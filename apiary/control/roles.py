"""Roles: the built-in four and per-organization custom roles; a user's grants.

A role is referenced by name in requests: a built-in name (``owner``, ``admin``,
``member``, ``viewer``) or the name of one of the organization's custom roles. Nobody can
hand out more than they have: creating a custom role, or granting a role, requires that
its permissions are a subset of the caller's own permissions on that resource.
"""

from __future__ import annotations

import re

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from apiary.control._common import new_id
from apiary.control.authz import Access, Grant, UserPrincipal
from apiary.control.db import Invitation, Membership, OidcProvider, Role, User
from apiary.control.permissions import BUILTIN_ROLES, Permission, parse_permissions
from apiary.control.service import ControlPlane
from apiary.errors import Conflict, InvalidRequest, NotFound, PermissionDenied

_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def role_permissions(role: Role) -> frozenset[Permission]:
    """What a role grants: the code's set for built-ins, the stored set for custom roles."""
    if role.builtin:
        return BUILTIN_ROLES[role.id]
    return parse_permissions(role.permissions)


def resolve_role(db: Session, org_id: str, name: str) -> Role:
    """The role called ``name`` for ``org_id``: built-in, or one of the org's custom roles."""
    if name in BUILTIN_ROLES:
        role = db.get(Role, name)
    else:
        role = db.execute(
            select(Role).where(Role.org_id == org_id, Role.name == name)
        ).scalar_one_or_none()
    if role is None:
        raise InvalidRequest(f"no role named {name!r} in this organization", field="role")
    return role


def check_can_grant(caller: Access, permissions: frozenset[Permission]) -> None:
    """Refuse handing out permissions the caller does not hold itself (no escalation)."""
    missing = permissions - caller.permissions
    if missing:
        raise PermissionDenied(
            "you cannot grant permissions you do not have: "
            + ", ".join(sorted(p.value for p in missing))
        )


def load_principal(db: Session, user: User, session_id: str | None) -> UserPrincipal:
    """The user with every membership and what its role grants (one query)."""
    rows = db.execute(
        select(Membership, Role)
        .join(Role, Role.id == Membership.role_id)
        .where(Membership.user_id == user.id)
    )
    grants = {
        membership.scope_id: Grant(membership.scope_id, membership.org_id, role.name,
                                   role_permissions(role))
        for membership, role in rows
    }
    return UserPrincipal(user.id, user.email, session_id, grants)


def list_roles(db: Session, org_id: str) -> list[Role]:
    return list(db.scalars(
        select(Role).where(or_(Role.org_id.is_(None), Role.org_id == org_id))
        .order_by(Role.builtin.desc(), Role.name)
    ))


def create_custom_role(
    cp: ControlPlane, db: Session, caller: Access, *, org_id: str, name: str,
    permissions: list[str],
) -> Role:
    if not _ROLE_NAME.match(name) or name in BUILTIN_ROLES:
        raise InvalidRequest(
            "a custom role name is lowercase letters, digits, '-' or '_', starts with a letter,"
            " and is not a built-in role's name", field="name",
        )
    parsed = _parse(permissions)
    check_can_grant(caller, parsed)
    if db.execute(select(Role.id).where(Role.org_id == org_id, Role.name == name)).first():
        raise Conflict("a role with this name exists", field="name")
    role = Role(id=new_id(), org_id=org_id, name=name, builtin=False,
                permissions=sorted(p.value for p in parsed), created_at=cp.now())
    db.add(role)
    db.flush()
    return role


def get_custom_role(db: Session, org_id: str, role_id: str) -> Role:
    role = db.get(Role, role_id)
    if role is None or role.builtin or role.org_id != org_id:
        raise NotFound("role not found")
    return role


def update_custom_role(db: Session, caller: Access, role: Role, permissions: list[str]) -> Role:
    parsed = _parse(permissions)
    check_can_grant(caller, parsed | role_permissions(role))
    role.permissions = sorted(p.value for p in parsed)
    return role


def delete_custom_role(db: Session, caller: Access, role: Role) -> None:
    check_can_grant(caller, role_permissions(role))
    for column in (Membership.role_id, Invitation.role_id, OidcProvider.default_role_id):
        if db.execute(select(column).where(column == role.id).limit(1)).first():
            raise Conflict("the role is still in use; reassign its members first")
    db.delete(role)


def _parse(permissions: list[str]) -> frozenset[Permission]:
    try:
        return parse_permissions(permissions)
    except ValueError as exc:
        raise InvalidRequest(str(exc), field="permissions") from None
