"""Administration as functions: what ``apiary users|projects|keys|data-planes ...`` do.

Each function takes settings (cpdb is ``settings.cp_database``, migrated on open) and
explicit arguments, acts as the operator (:data:`~apiary.control.authz.SYSTEM`: whoever
can read the data directory or the database URL already controls everything), and returns
a JSON-serialisable dict. Secrets (passwords it generated, API keys) appear in that dict
once and are stored only as hashes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from apiary.control import apikeys, tenancy
from apiary.control.authz import SYSTEM, access
from apiary.control.dataplanes import (
    list_data_planes,
    register_data_plane,
    set_serves_new_projects,
)
from apiary.control.db import (
    ApiKey,
    DataPlane,
    Organization,
    OrgDomain,
    Project,
    User,
    Workspace,
)
from apiary.control.federation import DEFAULT_BOOTSTRAP_TTL_S, create_data_plane
from apiary.control.identity import domains, verification
from apiary.control.identity.accounts import create_user, find_user_by_email, validate_password
from apiary.control.identity.sessions import revoke_user_sessions
from apiary.control.passwords import hash_password
from apiary.control.service import ControlPlane
from apiary.errors import Conflict, InvalidRequest, NotFound
from apiary.settings import ApiarySettings


@contextmanager
def control_plane(settings: ApiarySettings) -> Iterator[ControlPlane]:
    """A migrated :class:`ControlPlane` for one administrative command."""
    cp = ControlPlane.open(settings, migrate=True)
    try:
        yield cp
    finally:
        cp.close()


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def user_dict(user: User) -> dict[str, Any]:
    return {"id": user.id, "email": user.email, "display_name": user.display_name,
            "disabled": user.disabled, "created_at": _time(user.created_at)}


def key_dict(key: ApiKey) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "scope": key.scope, "org_id": key.org_id,
            "workspace_id": key.workspace_id, "project_id": key.project_id,
            "permissions": list(key.permissions), "created_by": key.created_by,
            "created_at": _time(key.created_at), "last_used_at": _time(key.last_used_at),
            "revoked_at": _time(key.revoked_at)}


def project_dict(project: Project) -> dict[str, Any]:
    return {"id": project.id, "name": project.name, "org_id": project.org_id,
            "workspace_id": project.workspace_id, "created_at": _time(project.created_at)}


def users_create(
    settings: ApiarySettings, *, email: str, password: str | None = None,
    display_name: str | None = None,
) -> dict[str, Any]:
    """Create a user. Without ``password`` one is generated and returned once."""
    generated = password is None
    password = password or secrets.token_urlsafe(18)
    with control_plane(settings) as cp, cp.transaction() as db:
        # The operator vouches for the address of the accounts they create.
        user = create_user(cp, db, email=email, password=password, display_name=display_name,
                           verified=True)
        result = user_dict(user)
    if generated:
        result["password"] = password
    return result


def users_reset_password(
    settings: ApiarySettings, *, email: str, password: str | None = None
) -> dict[str, Any]:
    """Replace a user's password (the operator's recovery path, e.g. for the bootstrap
    admin, whose first password is shown once and stored nowhere).

    Without ``password`` one is generated and returned once in ``password``. Every live
    session of the user is revoked (whoever knew the old password is logged out) and the
    account's lockout is cleared. TOTP enrolment is left as it is: a second factor still
    guards the account. Raises :class:`NotFound` for an unknown email,
    :class:`InvalidRequest` for a password the policy refuses.
    """

    generated = password is None
    password = password if password is not None else secrets.token_urlsafe(18)
    with control_plane(settings) as cp:
        validate_password(cp, password)
        with cp.transaction() as db:
            if find_user_by_email(db, email) is None:
                raise NotFound(f"no user with email {email}")
        # Hashed outside the transaction: argon2 takes tens of milliseconds.
        new_hash = hash_password(cp.password_hasher, password)
        with cp.transaction() as db:
            user = find_user_by_email(db, email)
            if user is None:
                raise NotFound(f"no user with email {email}")
            was_locked = user.locked_until is not None and user.locked_until > cp.now()
            user.password_hash = new_hash
            user.failed_logins = 0
            user.last_failed_login_at = None
            user.locked_until = None
            user.updated_at = cp.now()
            revoked = revoke_user_sessions(cp, db, user.id)
            result = {**user_dict(user), "sessions_revoked": revoked,
                      "lockout_cleared": was_locked}
    if generated:
        result["password"] = password
    return result


def users_verify_link(settings: ApiarySettings, *, email: str) -> dict[str, Any]:
    """A fresh verification link for ``email`` (an unverified account's address, or a
    pending change to it), for an operator to hand over when no SMTP server is configured.
    Older unused links of the same kind stop working. The link is a secret: printed once,
    stored only as a hash."""

    with control_plane(settings) as cp, cp.transaction() as db:
        issued = verification.operator_link(cp, db, email)
        return {"email": issued.email, "user_id": issued.user_id, "purpose": issued.purpose,
                "link": issued.link, "token": issued.token,
                "expires_at": _time(issued.expires_at)}


def users_set_instance_admin(
    settings: ApiarySettings, *, email: str, enabled: bool = True
) -> dict[str, Any]:
    """Make a user an instance admin (or not): they may approve organizations' email-domain
    claims (``/v1/admin/domains``)."""
    with control_plane(settings) as cp, cp.transaction() as db:
        user = find_user_by_email(db, email)
        if user is None:
            raise NotFound(f"no user with email {email}")
        user.is_instance_admin = enabled
        user.updated_at = cp.now()
        return {**user_dict(user), "is_instance_admin": user.is_instance_admin}


def _domain_dict(row: OrgDomain) -> dict[str, Any]:
    return {"id": row.id, "org_id": row.org_id, "domain": row.domain,
            "created_at": _time(row.created_at), "approved_at": _time(row.approved_at),
            "approved_by": row.approved_by}


def domains_list(settings: ApiarySettings, *, pending_only: bool = False) -> dict[str, Any]:
    """Every organization's email-domain claims (``pending_only``: not yet approved)."""

    with control_plane(settings) as cp, cp.transaction() as db:
        return {"domains": [_domain_dict(d) for d in
                            domains.list_claims(db, pending_only=pending_only)]}


def domains_approve(settings: ApiarySettings, *, claim_id: str) -> dict[str, Any]:
    """Approve a domain claim as the operator: the organization's identity providers become
    trusted for that domain's addresses, within that organization. Approve only after
    checking the organization owns the domain."""

    with control_plane(settings) as cp, cp.transaction() as db:
        row = domains.approve(cp, db, domains.get_claim(db, claim_id),
                              approved_by=SYSTEM.subject)
        return _domain_dict(row)


def _org_by_id_or_name(db: Session, ref: str) -> Organization | None:
    org = db.get(Organization, ref)
    if org is not None:
        return org
    matches = list(db.scalars(select(Organization).where(Organization.name == ref)))
    if len(matches) > 1:
        raise Conflict(f"several organizations are named {ref!r}; pass its id")
    return matches[0] if matches else None


def projects_create(
    settings: ApiarySettings, *, name: str, workspace_id: str | None = None,
    org: str | None = None, workspace: str = "default", owner_email: str | None = None,
) -> dict[str, Any]:
    """Create a project in ``workspace_id``, or in workspace ``workspace`` of organization
    ``org`` (id or name), creating the organization (owned by ``owner_email``) and the
    workspace when they do not exist."""
    with control_plane(settings) as cp, cp.transaction() as db:
        if workspace_id is not None:
            target = tenancy.get_workspace(db, workspace_id)
        else:
            if org is None:
                raise InvalidRequest("name a workspace id, or an organization", field="org")
            organization = _org_by_id_or_name(db, org)
            if organization is None:
                owner = find_user_by_email(db, owner_email) if owner_email else None
                if owner_email and owner is None:
                    raise NotFound(f"no user with email {owner_email}")
                organization = tenancy.create_org(cp, db, name=org,
                                                  owner_user_id=owner.id if owner else None)
            found = db.execute(select(Workspace).where(
                Workspace.org_id == organization.id, Workspace.name == workspace
            )).scalar_one_or_none()
            target = found or tenancy.create_workspace(cp, db, organization, workspace)
        return project_dict(tenancy.create_project(cp, db, target, name))


def keys_create(
    settings: ApiarySettings, *, name: str, project_id: str | None = None,
    workspace_id: str | None = None, permissions: list[str] | None = None,
) -> dict[str, Any]:
    """Mint a key for a project (or, with ``workspace_id``, a workspace); the key is in
    ``api_key``, shown this once."""
    if (project_id is None) == (workspace_id is None):
        raise InvalidRequest("name exactly one of a project id and a workspace id")
    with control_plane(settings) as cp, cp.transaction() as db:
        node = (tenancy.get_project(db, project_id) if project_id is not None
                else tenancy.get_workspace(db, str(workspace_id)))
        resource = tenancy.resource_of(node)
        granted = access(SYSTEM, resource)
        assert granted is not None
        issued = apikeys.create_key(cp, db, granted, resource, name=name,
                                    permissions=permissions, created_by=SYSTEM.subject)
        return {**key_dict(issued.key), "api_key": issued.value}


def keys_revoke(settings: ApiarySettings, *, key_id: str) -> dict[str, Any]:
    """Revoke a key by its id (the 24 characters after ``hh_ingst_``, or the whole key)."""
    if key_id.startswith("hh_ingst_"):
        key_id = key_id[len("hh_ingst_"):].split("_", 1)[0]
    with control_plane(settings) as cp, cp.transaction() as db:
        key = db.get(ApiKey, key_id)
        if key is None:
            raise NotFound("API key not found")
        return key_dict(apikeys.revoke_key(cp, key))


def keys_list(
    settings: ApiarySettings, *, project_id: str | None = None, workspace_id: str | None = None
) -> dict[str, Any]:
    with control_plane(settings) as cp, cp.transaction() as db:
        statement = select(ApiKey).order_by(ApiKey.created_at)
        if project_id is not None:
            statement = statement.where(ApiKey.project_id == project_id)
        if workspace_id is not None:
            statement = statement.where(ApiKey.workspace_id == workspace_id)
        return {"keys": [key_dict(k) for k in db.scalars(statement)]}


def keys_rotate_signing(settings: ApiarySettings) -> dict[str, Any]:
    """Start a signing-key rotation: the next key is published now and signs once it has
    been published for ``cp_jwks_cache_s``. Returns every key's state."""
    with control_plane(settings) as cp, cp.transaction() as db:
        next_key = cp.signing.rotate(db)
        return {"next_kid": next_key.kid, "signs_from": _time(next_key.not_before),
                "keys": cp.signing.describe(db)}


def data_planes_register(
    settings: ApiarySettings, *, dp_id: str, name: str, url: str, org_id: str | None = None
) -> dict[str, Any]:
    """Register a data plane (its id becomes a valid token audience)."""
    with control_plane(settings) as cp, cp.transaction() as db:
        plane = register_data_plane(cp, db, dp_id=dp_id, name=name, url=url, org_id=org_id)
        return _plane_dict(plane)


def data_planes_create(
    settings: ApiarySettings, *, name: str, url: str, org_id: str | None = None,
    ttl_s: int = DEFAULT_BOOTSTRAP_TTL_S,
) -> dict[str, Any]:
    """Create a federated data plane (status ``pending``) and its one-time bootstrap token,
    returned here once (only its SHA-256 is stored): the data plane registers its own
    public key with it (``APIARY_BOOTSTRAP_TOKEN``)."""
    with control_plane(settings) as cp, cp.transaction() as db:
        org = _org_by_id_or_name(db, org_id) if org_id is not None else None
        if org_id is not None and org is None:
            raise NotFound("organization not found", org_id=org_id)
        plane, token = create_data_plane(db, name=name, url=url,
                                         org_id=org.id if org else None, now=cp.now(),
                                         bootstrap_ttl_s=ttl_s)
        return {**_plane_dict(plane), "bootstrap_token": token,
                "bootstrap_expires_at": _time(plane.bootstrap_expires_at)}


def data_planes_default(settings: ApiarySettings, *, dp_id: str,
                        enabled: bool = True) -> dict[str, Any]:
    """Make data plane ``dp_id`` the one new projects are assigned to (unmarking any
    other), or with ``enabled`` False unmark it. 409 for a legacy, pending or revoked data
    plane. Projects that exist keep theirs."""
    with control_plane(settings) as cp, cp.transaction() as db:
        plane = db.get(DataPlane, dp_id)
        if plane is None:
            raise NotFound("data plane not found", data_plane_id=dp_id[:200])
        set_serves_new_projects(db, plane, enabled)
        return _plane_dict(plane)


def data_planes_list(settings: ApiarySettings) -> dict[str, Any]:
    with control_plane(settings) as cp, cp.transaction() as db:
        return {"data_planes": [_plane_dict(p) for p in list_data_planes(db, None)]}


def _plane_dict(plane: DataPlane) -> dict[str, Any]:
    return {"id": plane.id, "name": plane.name, "url": plane.url, "org_id": plane.org_id,
            "status": plane.status, "federated": plane.federated,
            "serves_new_projects": plane.serves_new_projects,
            "created_at": _time(plane.created_at)}


def bootstrap(
    settings: ApiarySettings, *, admin_email: str, org_name: str = "Default",
    workspace_name: str = "default", project_name: str = "default",
    data_plane_id: str | None = None, data_plane_url: str | None = None, mint_key: bool = True,
    local_data_plane: bool = True,
) -> dict[str, Any]:
    """What ``apiary up`` needs on an embedded installation, idempotently: the local data
    plane registered (``local_data_plane``; a control-plane-only node has none), an admin
    user (password generated and returned only when created), an organization it owns with
    a workspace and a project, and (``mint_key``) a new project key. Running it again
    reuses everything that exists."""
    dp_id = data_plane_id or settings.data_plane_id
    with control_plane(settings) as cp, cp.transaction() as db:
        result: dict[str, Any] = {}
        if local_data_plane and db.get(DataPlane, dp_id) is None:
            register_data_plane(cp, db, dp_id=dp_id, name="local",
                                url=data_plane_url or settings.base_url)
        user = find_user_by_email(db, admin_email)
        if user is None:
            password = secrets.token_urlsafe(18)
            user = create_user(cp, db, email=admin_email, password=password,
                               display_name="Administrator", verified=True)
            result["admin_password"] = password
        # The installation's own admin: verified by the operator, approves domain claims.
        if user.email_verified_at is None:
            user.email_verified_at = cp.now()
        user.is_instance_admin = True
        org = db.execute(select(Organization).where(
            Organization.name == org_name, Organization.created_by == user.id
        )).scalars().first() or tenancy.create_org(cp, db, name=org_name, owner_user_id=user.id)
        workspace = db.execute(select(Workspace).where(
            Workspace.org_id == org.id, Workspace.name == workspace_name
        )).scalar_one_or_none() or tenancy.create_workspace(cp, db, org, workspace_name)
        project = db.execute(select(Project).where(
            Project.workspace_id == workspace.id, Project.name == project_name
        )).scalar_one_or_none() or tenancy.create_project(cp, db, workspace, project_name)
        result.update(admin=user_dict(user), org_id=org.id, workspace_id=workspace.id,
                      project=project_dict(project), data_plane_id=dp_id)
        if mint_key:
            resource = tenancy.resource_of(project)
            granted = access(SYSTEM, resource)
            assert granted is not None
            issued = apikeys.create_key(cp, db, granted, resource, name="bootstrap",
                                        permissions=None, created_by=SYSTEM.subject)
            result["key"] = {**key_dict(issued.key), "api_key": issued.value}
        cp.signing.current(db)  # the first signing key exists before any data plane asks
        return result
