"""Request authentication and the permission each endpoint states.

Every route has exactly one guard dependency, and the guard carries the permission the
route needs (``apiary_permission``; a test checks that no route lacks one):

- :class:`On` — the node addressed by the path (``org_id``, ``workspace_id`` or
  ``project_id``) is loaded and :func:`~apiary.control.authz.authorize` d before the route
  runs; the route gets a :class:`Scope`.
- :class:`Deferred` — the node is known only from the body or a looked-up row; the route
  gets a :class:`Checker` whose :meth:`Checker.check` authorizes with the declared
  permission (the route cannot choose another).
- :class:`Authenticated` — any logged-in caller (``users_only``: a person, not a key).
- :data:`PUBLIC` — no credentials (login, sign-up, JWKS, SSO redirects).

Credentials: ``Authorization: Bearer <session token | API key | control-plane token>``, or
the session cookie. The only tokens accepted are control-plane tokens (``aud`` = the
issuer); a data-plane token is refused with 401 (:func:`apiary.control.tokens.verify_access_token`).
The cookie is ``SameSite=Lax`` and ``HttpOnly``: other sites cannot send it with POSTs.
On top of that, a request authenticated by the cookie with an unsafe method (anything but
GET, HEAD, OPTIONS) must carry ``X-CSRF-Token`` equal to :func:`csrf_token_for` the session
(the web UI reads it from the ``apiary_csrf`` cookie, which is not HttpOnly): a page of
another origin, even a sibling subdomain that SameSite counts as the same site, can neither
read that cookie nor compute the value, so it cannot act with the session (403
``csrf_failed``). A credential in the ``Authorization`` header needs no CSRF token: no
browser attaches it by itself.

Recent authentication: a guard whose permission is in
:data:`~apiary.control.permissions.RECENT_AUTH` (``keys:manage``, ``members:manage``,
``org:manage``: minting credentials, changing who may do what, roles, SSO providers)
admits only a user's *session* that authenticated within ``cp_recent_auth_s``
(:func:`require_recent_authentication`); an API key or a token never passes, whatever it
carries. Anything else is 401 ``reauthentication_required``. Authorization runs first: a
caller with no access to the node still gets 404 (another tenant's things stay invisible),
and a user whose role lacks the permission 403; a key or token of the node's own tenant
gets the 401, which says why.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Literal
from urllib.parse import urlsplit

from starlette.requests import Request

from apiary.control.apikeys import authenticate_key
from apiary.control.authz import (
    Access,
    KeyPrincipal,
    Principal,
    Resource,
    SystemPrincipal,
    UserPrincipal,
    authorize,
)
from apiary.control.identity.sessions import SESSION_PREFIX, resolve_session
from apiary.control.permissions import RECENT_AUTH, Permission
from apiary.control.roles import load_principal
from apiary.control.service import ControlPlane
from apiary.control.tenancy import get_org, get_project, get_workspace, resource_of
from apiary.control.tokens import verify_access_token
from apiary.credentials import looks_like_jwt
from apiary.errors import (
    AuthenticationFailed,
    PermissionDenied,
    ReauthenticationRequired,
    UnsupportedMediaType,
)

SESSION_COOKIE = "apiary_session"


class CsrfFailed(PermissionDenied):
    """An unsafe request authenticated by a browser's session cookie without that
    session's CSRF token (``X-CSRF-Token``): 403 ``csrf_failed``."""

    error_code = "csrf_failed"

#: The CSRF token of the cookie session (readable by the UI's script, unlike the session).
CSRF_COOKIE = "apiary_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token_for(session_token: str) -> str:
    """The CSRF token of a session: a one-way function of the session's secret token, so
    only who holds the session (or this value, given to its own pages) can present it."""
    return hashlib.sha256(b"apiary-csrf:" + session_token.encode()).hexdigest()


def check_csrf(request: Request, session_token: str) -> None:
    """Refuse (403 ``csrf_failed``) an unsafe request authenticated by the session cookie
    unless its ``X-CSRF-Token`` header is that session's :func:`csrf_token_for`."""
    if request.method.upper() in SAFE_METHODS:
        return
    presented = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(presented.encode(), csrf_token_for(session_token).encode()):
        raise CsrfFailed("this request came with the session cookie but without its CSRF "
                         "token: send the X-CSRF-Token header (the apiary_csrf cookie's "
                         "value), or authenticate with 'Authorization: Bearer'")


#: What a browser's ``Sec-Fetch-Site`` says about a request the page itself made.
_OWN_FETCH_SITES = frozenset({"same-origin", "none"})


def refuse_cross_site_login(request: Request) -> None:
    """Login CSRF: another site's page must not sign the victim's browser into an account
    of the attacker's choosing (a cross-site form POST, or ``fetch``, to a route that sets
    the session cookie). Such a route takes JSON only (a form can send ``text/plain``,
    urlencoded or multipart bodies, never ``application/json`` without a CORS preflight
    the control plane does not grant), and refuses a request whose browser says it came
    from another origin (``Sec-Fetch-Site``) or whose ``Origin`` is neither this request's
    host nor the issuer's. A client that is not a browser sends neither header: unaffected.
    403 ``csrf_failed``; 415 for a body that is not JSON. A dependency (``dependencies=``
    of the route): it runs before the body is read."""
    cp = control_plane(request)
    site = request.headers.get("sec-fetch-site")
    if site is not None and site.lower() not in _OWN_FETCH_SITES:
        raise CsrfFailed(f"a sign-in from another site's page ({site}) is refused: sign in "
                         "on this site")
    origin = request.headers.get("origin")
    if origin is not None:
        issuer = urlsplit(cp.issuer)
        host = request.headers.get("host", "")
        parts = urlsplit(origin) if origin != "null" else None
        same = parts is not None and parts.scheme in ("http", "https") and (
            parts.netloc == host or (parts.scheme, parts.netloc) == (issuer.scheme, issuer.netloc))
        if not same:
            raise CsrfFailed("a sign-in from another origin is refused: sign in on this site")
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType("send the credentials as JSON (Content-Type: "
                                   "application/json)")


def control_plane(request: Request) -> ControlPlane:
    cp: ControlPlane = request.app.state.control_plane
    return cp


def credential_of(request: Request) -> str:
    """The bearer credential (header first, then the session cookie, whose unsafe
    requests must carry the session's CSRF token: :func:`check_csrf`)."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationFailed("Authorization must be 'Bearer <credential>'")
        return value.strip()
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        check_csrf(request, cookie)
        return cookie
    raise AuthenticationFailed("log in, or send 'Authorization: Bearer <session or API key>'")


def authenticate(request: Request) -> Principal:
    """The caller of ``request``: a user (session), an API key or a control-plane token."""
    cp = control_plane(request)
    credential = credential_of(request)
    with cp.transaction() as db:
        if credential.startswith(SESSION_PREFIX):
            session, user = resolve_session(cp, db, credential)
            # A session is created only by checking credentials (login, SSO, re-authenticate),
            # so its creation time is when the user last authenticated.
            return replace(load_principal(db, user, session.id),
                           authenticated_at=session.created_at)
        if looks_like_jwt(credential):
            return verify_access_token(cp, db, credential)
        return authenticate_key(cp, db, credential)


def _require_session(permission: Permission, principal: Principal) -> None:
    """Refuse an API key or token a permission that needs a recent login."""
    if permission in RECENT_AUTH and not isinstance(principal, UserPrincipal | SystemPrincipal):
        raise ReauthenticationRequired(
            f"{permission.value} needs a logged-in user's session with a recent login; API "
            "keys and tokens cannot manage keys, members, roles or the organization")


def require_recent_authentication(cp: ControlPlane, principal: Principal,
                                  permission: Permission) -> None:
    """Allow ``permission`` only to the operator or a user session that authenticated within
    ``cp_recent_auth_s``, if the permission is one of
    :data:`~apiary.control.permissions.RECENT_AUTH`; else :class:`ReauthenticationRequired`."""
    if permission not in RECENT_AUTH or isinstance(principal, SystemPrincipal):
        return
    _require_session(permission, principal)
    assert isinstance(principal, UserPrincipal)
    window = cp.settings.cp_recent_auth_s
    at = principal.authenticated_at
    if at is None or cp.now() - at > timedelta(seconds=window):
        raise ReauthenticationRequired(
            f"{permission.value} needs a login within the last {window} s: re-authenticate "
            "(POST /v1/auth/reauthenticate with your password and TOTP code, or log in or "
            "sign in with SSO again) and retry")


def _authorize(cp: ControlPlane, principal: Principal, permission: Permission,
               resource: Resource) -> Access:
    """:func:`~apiary.control.authz.authorize`, then :func:`require_recent_authentication`.
    A key or token refused a recent-login permission is told why (401), not just 403."""
    try:
        granted = authorize(principal, permission, resource)
    except PermissionDenied:
        _require_session(permission, principal)
        raise
    require_recent_authentication(cp, principal, permission)
    return granted


def _require_user(principal: Principal) -> UserPrincipal:
    if not isinstance(principal, UserPrincipal):
        raise PermissionDenied("this endpoint needs a logged-in user, not an API key")
    return principal


@dataclass(frozen=True, slots=True)
class Scope:
    """An authorized request on a path-addressed node."""

    cp: ControlPlane
    principal: Principal
    resource: Resource
    access: Access

    @property
    def actor(self) -> str:
        """Who to record as author: ``user:<id>`` or ``key:<id>``."""
        return self.principal.subject

    @property
    def user_id(self) -> str | None:
        return self.principal.user_id if isinstance(self.principal, UserPrincipal) else None


class On:
    """Guard: authorize ``permission`` on the org/workspace/project the path addresses."""

    def __init__(self, permission: Permission, node: Literal["org", "workspace", "project"]):
        self.apiary_permission = permission.value
        self.permission = permission
        self.node = node

    def __call__(self, request: Request) -> Scope:
        cp = control_plane(request)
        principal = authenticate(request)
        node_id = request.path_params[f"{self.node}_id"]
        with cp.transaction() as db:
            if self.node == "org":
                resource = resource_of(get_org(db, node_id))
            elif self.node == "workspace":
                resource = resource_of(get_workspace(db, node_id))
            else:
                resource = resource_of(get_project(db, node_id))
        return Scope(cp, principal, resource,
                     _authorize(cp, principal, self.permission, resource))


@dataclass(frozen=True, slots=True)
class Checker:
    """An authenticated request whose node is found later; checks one fixed permission."""

    cp: ControlPlane
    principal: Principal
    permission: Permission

    def check(self, resource: Resource) -> Scope:
        return Scope(self.cp, self.principal, resource,
                     _authorize(self.cp, self.principal, self.permission, resource))


class Deferred:
    """Guard: authenticate now; the route authorizes ``permission`` via :class:`Checker`."""

    def __init__(self, permission: Permission) -> None:
        self.apiary_permission = permission.value
        self.permission = permission

    def __call__(self, request: Request) -> Checker:
        return Checker(control_plane(request), authenticate(request), self.permission)


@dataclass(frozen=True, slots=True)
class Caller:
    cp: ControlPlane
    principal: Principal

    @property
    def user(self) -> UserPrincipal:
        return _require_user(self.principal)


class Authenticated:
    """Guard: any authenticated caller (``users_only``: refuse API keys)."""

    def __init__(self, *, users_only: bool = True) -> None:
        self.apiary_permission = "authenticated:user" if users_only else "authenticated"
        self.users_only = users_only

    def __call__(self, request: Request) -> Caller:
        principal = authenticate(request)
        if self.users_only:
            _require_user(principal)
        return Caller(control_plane(request), principal)


class _Public:
    """Guard: no credentials needed."""

    apiary_permission = "public"

    def __call__(self, request: Request) -> ControlPlane:
        return control_plane(request)


PUBLIC = _Public()
USER = Authenticated(users_only=True)
ANYONE_AUTHENTICATED = Authenticated(users_only=False)

__all__ = ["ANYONE_AUTHENTICATED", "CSRF_COOKIE", "CSRF_HEADER", "PUBLIC", "USER", "Caller",
           "Checker", "CsrfFailed", "Deferred", "KeyPrincipal", "On", "Scope", "check_csrf",
           "csrf_token_for"]
