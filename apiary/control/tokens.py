"""Access tokens for data planes, and the token exchange that issues them.

A token is an ES256 JWT (header ``alg: ES256``, ``typ: at+jwt``, ``kid``) with claims::

    iss          the control plane's issuer URL (settings.cp_issuer_url)
    aud          the id of a registered data plane (a string, never a list)
    sub          "key:<key id>" or "user:<user id>"
    iat, nbf     issue time (nbf = iat)
    exp          iat + cp_token_ttl_s (default 300 s)
    jti          a random UUID
    org_id, workspace_id, project_id   the tenant; project_id is null for a workspace key
    role         "api_key" for keys; for users their role on the project
    permissions  sorted list of permission strings (apiary.control.permissions)

Exchange (``POST /v1/auth/token``): an API key plus an audience gives a token with the
key's tenant and permissions; a user session plus an audience and a project gives a token
with the user's effective role and permissions on that project. This is how a data plane
checks API keys without cpdb: it exchanges the key once, caches the token, and verifies
tokens locally against the JWKS.

The control plane also accepts its own tokens (:func:`verify_access_token`): a data plane
serving control-plane configuration (prompt templates, evaluators) forwards its caller's
credential, which may be such a token. The checks are the data plane's: ES256 pinned, a
published key, ``iss`` = this issuer, ``aud`` a registered data plane of the token's
organization, ``exp``/``nbf``/``iat`` with :data:`LEEWAY_S`; the token then acts with
exactly its tenant and permissions (:class:`~apiary.control.authz.TokenPrincipal`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from sqlalchemy.orm import Session

from apiary.control.apikeys import authenticate_key
from apiary.control.authz import TokenPrincipal, UserPrincipal, access
from apiary.control.dataplanes import audience_for
from apiary.control.db import Project, SigningKey
from apiary.control.permissions import Permission, sorted_values
from apiary.control.service import ControlPlane
from apiary.control.signing import ALGORITHM
from apiary.control.tenancy import get_project, resource_of
from apiary.errors import AuthenticationFailed, InvalidRequest, NotFound

TOKEN_TYPE = "at+jwt"
#: Clock skew tolerated when this control plane checks a token it signed.
LEEWAY_S = 30
_PERMISSIONS = {p.value: p for p in Permission}


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
) -> AccessToken:
    """Sign a token for a registered data plane (``audience``) with the current key."""
    audience_for(db, audience, org_id)
    key = cp.signing.current(db)
    now = cp.now().replace(microsecond=0)
    ttl = cp.settings.cp_token_ttl_s
    claims: dict[str, Any] = {
        "iss": cp.issuer, "aud": audience, "sub": subject,
        "iat": int(now.timestamp()), "nbf": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl)).timestamp()), "jti": str(uuid.uuid4()),
        "org_id": org_id, "workspace_id": workspace_id, "project_id": project_id,
        "role": role, "permissions": sorted_values(permissions),
    }
    token = jwt.encode(
        claims, cp.signing.private_key(key), algorithm=ALGORITHM,
        headers={"kid": key.kid, "typ": TOKEN_TYPE},
    )
    return AccessToken(token, ttl, claims)


def exchange_api_key(
    cp: ControlPlane, db: Session, credential: str, audience: str, project_id: str | None = None
) -> AccessToken:
    """A token carrying an API key's tenant and permissions (401 for a bad or revoked key).

    ``project_id`` narrows a workspace key's token to one project of its workspace (for a
    project key it must be the key's own project); other projects are 404.
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
    )


def exchange_session(
    cp: ControlPlane, db: Session, user: UserPrincipal, audience: str, project_id: str
) -> AccessToken:
    """A token with a user's effective role and permissions on one project (404 if the
    user has no role there)."""
    project = get_project(db, project_id)
    granted = access(user, resource_of(project))
    if granted is None:
        raise NotFound("project not found", project_id=project_id)
    return issue_token(
        cp, db, audience=audience, subject=user.subject, org_id=project.org_id,
        workspace_id=project.workspace_id, project_id=project.id, role=granted.role,
        permissions=granted.permissions,
    )


def verify_access_token(cp: ControlPlane, db: Session, token: str) -> TokenPrincipal:
    """The principal of an access token this control plane signed (module docstring);
    :class:`AuthenticationFailed` naming the failed check otherwise."""
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
    if not isinstance(audience, str) or not isinstance(org_id, str) or \
            not isinstance(workspace_id, str) or not (
                project_id is None or isinstance(project_id, str)):
        raise AuthenticationFailed("the token lacks its audience or tenant")
    try:
        audience_for(db, audience, org_id)
    except InvalidRequest:
        raise AuthenticationFailed("the token's audience is not a data plane of its "
                                   "organization") from None
    raw = claims.get("permissions")
    permissions = frozenset(_PERMISSIONS[p] for p in raw if isinstance(p, str)
                            and p in _PERMISSIONS) if isinstance(raw, list) else frozenset()
    return TokenPrincipal(
        key_id=str(claims["jti"]), org_id=org_id, workspace_id=workspace_id,
        project_id=project_id, permissions=permissions, token_subject=str(claims["sub"]),
    )
