"""API keys: project ingestion keys and workspace keys, shown once, stored as hashes.

Format ``hh_ingst_<24 alphanumerics>_<64 alphanumerics>`` (:mod:`apiary.credentials`,
shared with the data plane): the first part is the key's id (the primary key, safe to show
and log), the second its secret, of which only a SHA-256 is stored and compared in constant
time. A key's permissions are fixed at creation, drawn from :data:`KEY_GRANTABLE` and bounded by its
creator's own. Revocation is immediate for the control plane; data planes that exchanged
the key for a token stop accepting it when that token (minutes) expires.

Last use is recorded cheaply (:class:`apiary.control.key_usage.LastUsedRecorder`): at most
once per ``cp_key_last_used_resolution_s`` per key.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from apiary.control.authz import Access, KeyPrincipal, Resource
from apiary.control.db import ApiKey
from apiary.control.permissions import (
    DEFAULT_KEY_PERMISSIONS,
    KEY_GRANTABLE,
    Permission,
    parse_permissions,
    sorted_values,
)
from apiary.control.roles import check_can_grant
from apiary.control.service import ControlPlane
from apiary.credentials import INGEST_KEY_PREFIX, hash_secret, mint_api_key, parse_api_key
from apiary.errors import AuthenticationFailed, InvalidRequest, NotFound

_NO_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key. ``value`` is the whole key, shown once; it is not stored anywhere."""

    key: ApiKey
    value: str


def create_key(
    cp: ControlPlane, db: Session, caller: Access, resource: Resource, *, name: str,
    permissions: list[str] | None, created_by: str | None,
) -> IssuedKey:
    """Mint a key for a project (``resource`` is a project) or a workspace."""
    if resource.kind == "organization":
        raise InvalidRequest("keys belong to a project or a workspace")
    try:
        granted = (parse_permissions(permissions) if permissions is not None
                   else DEFAULT_KEY_PERMISSIONS)
    except ValueError as exc:
        raise InvalidRequest(str(exc), field="permissions") from None
    if not granted:
        raise InvalidRequest("a key needs at least one permission", field="permissions")
    if not granted <= KEY_GRANTABLE:
        raise InvalidRequest(
            "keys cannot hold management permissions: "
            + ", ".join(sorted_values(granted - KEY_GRANTABLE)), field="permissions",
        )
    check_can_grant(caller, granted)
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("a key name must have 1 to 200 characters", field="name")
    minted = mint_api_key()
    assert resource.workspace_id is not None
    key = ApiKey(
        id=minted.key_id, org_id=resource.org_id, workspace_id=resource.workspace_id,
        project_id=resource.project_id, scope=resource.kind, name=name,
        secret_hash=minted.secret_hash, permissions=sorted_values(granted),
        created_by=created_by, created_at=cp.now(),
    )
    db.add(key)
    db.flush()
    return IssuedKey(key, minted.value)


def _scoped(resource: Resource) -> list[ColumnElement[bool]]:
    assert resource.workspace_id is not None
    conditions: list[ColumnElement[bool]] = [ApiKey.org_id == resource.org_id,
                                ApiKey.workspace_id == resource.workspace_id]
    if resource.project_id is None:
        conditions.append(ApiKey.scope == "workspace")
    else:
        conditions.append(ApiKey.project_id == resource.project_id)
    return conditions


def list_keys(db: Session, resource: Resource) -> list[ApiKey]:
    """The keys of exactly this project, or of this workspace (not its projects')."""
    return list(db.scalars(select(ApiKey).where(*_scoped(resource))
                           .order_by(ApiKey.created_at)))


def get_key(db: Session, resource: Resource, key_id: str) -> ApiKey:
    key = db.execute(
        select(ApiKey).where(ApiKey.id == key_id, *_scoped(resource))
    ).scalar_one_or_none()
    if key is None:
        raise NotFound("API key not found")
    return key


def revoke_key(cp: ControlPlane, key: ApiKey) -> ApiKey:
    """Revoke (idempotent: a revoked key keeps its first revocation time)."""
    if key.revoked_at is None:
        key.revoked_at = cp.now()
    return key


def authenticate_key(cp: ControlPlane, db: Session, credential: str) -> KeyPrincipal:
    """The principal of a live API key, or :class:`AuthenticationFailed` (same message and
    the same work for an unknown id, a wrong secret and a revoked key)."""
    parsed = parse_api_key(credential)
    if parsed is None:
        raise AuthenticationFailed(f"not an API key (expected {INGEST_KEY_PREFIX}...)")
    key_id, secret = parsed
    key = db.get(ApiKey, key_id)
    candidate = hash_secret(secret)
    expected = key.secret_hash if key is not None else _NO_HASH
    if not hmac.compare_digest(candidate, expected) or key is None or key.revoked_at is not None:
        raise AuthenticationFailed("the API key is not valid")
    cp.key_usage.record(db, key.id, cp.now())
    return KeyPrincipal(
        key_id=key.id, org_id=key.org_id, workspace_id=key.workspace_id,
        project_id=key.project_id, permissions=parse_permissions(key.permissions),
    )


def key_permissions(key: ApiKey) -> frozenset[Permission]:
    return parse_permissions(key.permissions)
