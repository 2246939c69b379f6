"""Access tokens, and the token exchange that issues them.

A token is an ES256 JWT (header ``alg: ES256``, ``typ: at+jwt``, ``kid``) with claims::

    iss          the control plane's issuer URL (settings.cp_issuer_url)
    aud          the id of a registered data plane, or the issuer URL itself for a
                 control-plane token (a string, never a list)
    sub          "key:<key id>" or "user:<user id>"
    iat, nbf     issue time (nbf = iat)
    exp          iat + cp_token_ttl_s (default 300 s)
    jti          a random UUID
    org_id, workspace_id, project_id   the tenant; project_id is null for a workspace key
    role         "api_key" for keys; for users their role on the project
    permissions  sorted list of permission strings (apiary.control.permissions)
    workspace_permissions  what the subject holds on the workspace node itself: a user's
                 role there, a workspace key's permissions, nothing for a project key

Two audiences, two permission sets (the planes share no credentials):

- A **data-plane token** (``aud`` = a registered data plane) carries only
  :data:`~apiary.control.permissions.DATA_PLANE` permissions, never a management one, so a
  token seen by a data plane (or its logs) cannot mint keys or change memberships. The
  control plane refuses it (:func:`verify_access_token`).
- A **control-plane token** (``aud`` = the issuer) is the only token the control plane
  accepts. It carries the key's permissions, or the user's minus those that need a recent
  login (:data:`~apiary.control.permissions.RECENT_AUTH`), which only a session may use.

Exchange (``POST /v1/auth/token``): an API key plus an audience gives a token with the
key's tenant and permissions; a user session plus an audience and a project gives a token
with the user's effective role and permissions on that project, both narrowed to the
audience's set. This is how a data plane checks API keys without cpdb: it exchanges the
key once, caches the token, and verifies tokens locally against the JWKS.

A data plane serving control-plane configuration (prompt templates, evaluators) forwards
its caller's API key, never a data-plane token (``apiary.dataplane.replica.control_plane``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from sqlalchemy.orm import Session

from apiary.control.apikeys import authenticate_key
from apiary.control.authz import Resource, TokenPrincipal, UserPrincipal, access
from apiary.control.dataplanes import audience_for
from apiary.control.db import Project, SigningKey
from apiary.control.federation import check_token_audience
from apiary.control.permissions import (
    ALL_PERMISSIONS,
    DATA_PLANE,
    RECENT_AUTH,
    Permission,
    sorted_values,
)
from apiary.control.service import ControlPlane
from apiary.control.signing import ALGORITHM
from apiary.control.tenancy import get_project, resource_of
from apiary.errors import AuthenticationFailed, NotFound

TOKEN_TYPE = "at+jwt"
#: Clock skew tolerated when this control plane checks a token it signed.
LEEWAY_S = 30
_PERMISSIONS = {p.value: p for p in Permission}
#: What a control-plane token may carry: everything but what needs a recent login.
CONTROL_PLANE: frozenset[Permission] = ALL_PERMISSIONS - RECENT_AUTH


def is_control_plane_audience(cp: ControlPlane, audience: str) -> bool:
    """Whether ``audience`` names this control plane (its issuer URL) rather than a DP."""
    return audience.rstrip("/") == cp.issuer


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    expires_in: int
    claims: dict[str, Any]

    def to_body(self) -> dict[str, Any]:
        """The token endpoint's response (RFC 6749 §5.1 shape)."""
        return {"access_token": self.token, "token_type": "Bearer", "expires_in": self.expires_in}


def issue_token(
    cp: ControlPlane, db: Session, *, audience: str, subject: str, org_id: str,
    workspace_id: str, project_id: str | None, role: str, permissions: frozenset[Permission],
    workspace_permissions: frozenset[Permission] = frozenset(),
) -> AccessToken:
    """Sign a token for ``audience`` with the current key: a registered data plane of
    ``org_id`` (400 otherwise) that serves ``project_id`` (421 ``wrong_data_plane`` naming
    the one that does; 401 for a revoked data plane), or this control plane (its issuer
    URL).

    Both permission sets are narrowed to what that audience may receive
    (:data:`~apiary.control.permissions.DATA_PLANE` or :data:`CONTROL_PLANE`), whatever
    the caller passes: this is the one place a token's permissions are decided.
    """
    if is_control_plane_audience(cp, audience):
        audience, allowed = cp.issuer, CONTROL_PLANE
    else:
        # Revoked or unregistered data planes get nothing (401); a project served by
        # another data plane is 421 naming it (apiary.control.federation).
        check_token_audience(db, audience_for(db, audience, org_id), project_id)
        allowed = DATA_PLANE
    permissions, workspace_permissions = permissions & allowed, workspace_permissions & allowed
    key = cp.signing.current(db)
    now = cp.now().replace(microsecond=0)
    ttl = cp.settings.cp_token_ttl_s
    claims: dict[str, Any] = {
        "iss": cp.issuer, "aud": audience, "sub": subject,
        "iat": int(now.timestamp()), "nbf": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl)).timestamp()), "jti": str(uuid.uuid4()),
        "org_id": org_id, "workspace_id": workspace_id, "project_id": project_id,
        "role": role, "permissions": sorted_values(permissions),
        "workspace_permissions": sorted_values(workspace_permissions),
    }
    token = jwt.encode(
        claims, cp.signing.private_key(key), algorithm=ALGORITHM,
        headers={"kid": key.kid, "typ": TOKEN_TYPE},
    )
    return AccessToken(token, ttl, claims)


def exchange_api_key(
    cp: ControlPlane, db: Session, credential: str, audience: str, project_id: str | None = None
) -> AccessToken:
    """A token carrying an API key's tenant and permissions (401 for a bad or revoked key),
    narrowed to the audience's permission set (:func:`issue_token`).

    ``project_id`` narrows a workspace key's token to one project of its workspace (for a
    project key it must be the key's own project); other projects are 404. The token's
    ``workspace_permissions`` are a workspace key's permissions (even when narrowed to a
    project: the key holds them on the workspace) and empty for a project key.
    """
    key = authenticate_key(cp, db, credential)
    scoped_project = key.project_id
    if project_id is not None:
        project = db.get(Project, project_id)
        if project is None or access(key, resource_of(project)) is None:
            raise NotFound("project not found", project_id=project_id)
        scoped_project = project.id
    return issue_token(
        cp, db, audience=audience, subject=key.subject, org_id=key.org_id,
        workspace_id=key.workspace_id, project_id=scoped_project, role="api_key",
        permissions=key.permissions,
        workspace_permissions=key.permissions if key.project_id is None else frozenset(),
    )


def exchange_session(
    cp: ControlPlane, db: Session, user: UserPrincipal, audience: str, project_id: str
) -> AccessToken:
    """A token with a user's effective role and permissions on one project (404 if the
    user has no role there), narrowed to the audience's permission set (:func:`issue_token`).
    Its ``workspace_permissions`` are those of the user's role on the project's workspace
    node (none if their only role is on the project)."""
    project = get_project(db, project_id)
    granted = access(user, resource_of(project))
    if granted is None:
        raise NotFound("project not found", project_id=project_id)
    on_workspace = access(user, Resource(project.org_id, project.workspace_id))
    return issue_token(
        cp, db, audience=audience, subject=user.subject, org_id=project.org_id,
        workspace_id=project.workspace_id, project_id=project.id, role=granted.role,
        permissions=granted.permissions,
        workspace_permissions=on_workspace.permissions if on_workspace else frozenset(),
    )


def verify_access_token(cp: ControlPlane, db: Session, token: str) -> TokenPrincipal:
    """The principal of a control-plane token this control plane signed; otherwise
    :class:`AuthenticationFailed` naming the failed check.

    Checks: ES256 pinned, a published ``kid``, ``iss`` = this issuer, ``aud`` = this issuer
    exactly (a data-plane token is refused, saying so), ``exp``/``nbf``/``iat`` with
    :data:`LEEWAY_S`. The token then acts with exactly its tenant and permissions
    (:class:`~apiary.control.authz.TokenPrincipal`), narrowed again to
    :data:`CONTROL_PLANE`, so it never passes a recent-authentication guard.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthenticationFailed("the token is malformed") from None
    if header.get("alg") != ALGORITHM:
        raise AuthenticationFailed(f"the token must be signed with {ALGORITHM}")
    kid = header.get("kid")
    published = {k.kid: k for k in cp.signing.published(db)}
    key: SigningKey | None = published.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise AuthenticationFailed("the token is signed with an unknown key")
    public = jwt.PyJWK(dict(key.public_jwk), algorithm=ALGORITHM).key
    try:
        claims: dict[str, Any] = jwt.decode(
            token, public, algorithms=[ALGORITHM], issuer=cp.issuer, leeway=LEEWAY_S,
            options={"require": ["exp", "nbf", "iat", "iss", "aud", "sub", "jti"],
                     "verify_aud": False},
        )
    except jwt.PyJWTError as exc:
        raise AuthenticationFailed(f"the token is not valid: {exc}") from None
    audience, org_id = claims.get("aud"), claims.get("org_id")
    workspace_id, project_id = claims.get("workspace_id"), claims.get("project_id")
    if not isinstance(audience, str):
        raise AuthenticationFailed("the token's audience must be one string")
    if audience != cp.issuer:
        # A data-plane token: whoever holds it (a data plane, a log line) must not be able
        # to act on the control plane with it.
        raise AuthenticationFailed(
            "this token was issued for a data plane (aud is not the control plane): the "
            "control plane accepts only control-plane tokens (POST /v1/auth/token with "
            "audience = the issuer), sessions and API keys")
    if not isinstance(org_id, str) or not isinstance(workspace_id, str) or not (
            project_id is None or isinstance(project_id, str)):
        raise AuthenticationFailed("the token lacks its tenant")
    raw = claims.get("permissions")
    permissions = frozenset(_PERMISSIONS[p] for p in raw if isinstance(p, str)
                            and p in _PERMISSIONS) if isinstance(raw, list) else frozenset()
    permissions &= CONTROL_PLANE
    return TokenPrincipal(
        key_id=str(claims["jti"]), org_id=org_id, workspace_id=workspace_id,
        project_id=project_id, permissions=permissions, token_subject=str(claims["sub"]),
    )
