"""SSO endpoints: OIDC provider configuration per organization (``org:manage``), the
organization's SSO settings and claimed email domains, the instance admin's approval of
domain claims, the caller's linked identities, and the browser-facing login redirects
(public).

Browser state lives in HttpOnly, SameSite=Lax cookies, never in URLs:

- ``apiary_sso_binder`` -- set by ``/start`` (and ``link/start``), a random binder whose
  hash is stored with the login state; the callback refuses a state whose binder cookie is
  missing or different (login CSRF).
- ``apiary_sso_mfa`` -- set by the callback instead of a session when the account must
  still give its second factor; ``POST /v1/auth/sso/mfa`` with the code turns it into a
  session (single use, five minutes).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Response
from starlette.requests import Request
from starlette.responses import RedirectResponse

from apiary.control.api._guards import (
    PUBLIC,
    USER,
    Caller,
    On,
    Scope,
    refuse_cross_site_login,
)
from apiary.control.api.routes_auth import session_out, set_session_cookie
from apiary.control.api.schemas import (
    OidcProviderCreate,
    OidcProviderOut,
    OidcProviderUpdate,
    SessionOut,
)
from apiary.control.api.schemas_identity import (
    DomainClaimRequest,
    DomainOut,
    IdentityOut,
    LinkStartOut,
    SsoDiscoverOut,
    SsoDiscoverRequest,
    SsoMfaRequest,
    SsoSettings,
    SsoSettingsOut,
)
from apiary.control.db import OidcProvider, OrgDomain, Role, User
from apiary.control.identity import domains, sso, verification
from apiary.control.identity.oidc import OIDC, STATE_TTL
from apiary.control.identity.sessions import create_session
from apiary.control.permissions import Permission as P
from apiary.control.service import ControlPlane
from apiary.control.tenancy import get_org
from apiary.control.throttle import client_address
from apiary.errors import InvalidRequest, NotFound, RequestError

router = APIRouter(tags=["sso"])

Public = Annotated[ControlPlane, Depends(PUBLIC)]
UserCaller = Annotated[Caller, Depends(USER)]

BINDER_COOKIE = "apiary_sso_binder"
MFA_COOKIE = "apiary_sso_mfa"


def _set_cookie(cp: ControlPlane, response: Response, name: str, value: str,
                max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax",
                        secure=cp.issuer.startswith("https://"), path="/")


def _new_binder(cp: ControlPlane, response: Response) -> str:
    binder = secrets.token_urlsafe(32)
    _set_cookie(cp, response, BINDER_COOKIE, binder, int(STATE_TTL.total_seconds()))
    return binder


def _out(cp: ControlPlane, provider: OidcProvider, role: Role) -> OidcProviderOut:
    return OidcProviderOut(
        id=provider.id, org_id=provider.org_id, name=provider.name, issuer=provider.issuer,
        client_id=provider.client_id, scopes=provider.scopes, default_role=role.name,
        enabled=provider.enabled, redirect_uri=OIDC.redirect_uri(cp),
        login_url=f"{cp.issuer}/v1/sso/oidc/{provider.id}/start",
    )


def _role(scope: Scope, provider: OidcProvider) -> Role:
    with scope.cp.transaction() as db:
        role = db.get(Role, provider.default_role_id)
    assert role is not None
    return role


@router.get("/v1/orgs/{org_id}/sso/oidc", response_model=list[OidcProviderOut])
def list_providers(
    org_id: str, scope: Annotated[Scope, Depends(On(P.ORG_READ, "org"))]
) -> list[OidcProviderOut]:
    with scope.cp.transaction() as db:
        providers = sso.list_providers(db, org_id)
    return [_out(scope.cp, p, _role(scope, p)) for p in providers]


@router.post("/v1/orgs/{org_id}/sso/oidc", response_model=OidcProviderOut, status_code=201,
             summary="Configure an OpenID Connect provider for the organization")
def create_provider(
    org_id: str, body: OidcProviderCreate,
    scope: Annotated[Scope, Depends(On(P.ORG_MANAGE, "org"))],
) -> OidcProviderOut:
    with scope.cp.transaction() as db:
        provider = sso.create_provider(
            scope.cp, db, scope.access, org_id=org_id, name=body.name, issuer=body.issuer,
            client_id=body.client_id, client_secret=body.client_secret, scopes=body.scopes,
            default_role=body.default_role,
        )
    return _out(scope.cp, provider, _role(scope, provider))


@router.patch("/v1/orgs/{org_id}/sso/oidc/{provider_id}", response_model=OidcProviderOut)
def update_provider(
    org_id: str, provider_id: str, body: OidcProviderUpdate,
    scope: Annotated[Scope, Depends(On(P.ORG_MANAGE, "org"))],
) -> OidcProviderOut:
    with scope.cp.transaction() as db:
        provider = sso.get_provider(db, org_id, provider_id)
        sso.set_enabled(provider, body.enabled)
    return _out(scope.cp, provider, _role(scope, provider))


@router.delete("/v1/orgs/{org_id}/sso/oidc/{provider_id}", status_code=204)
def delete_provider(
    org_id: str, provider_id: str, scope: Annotated[Scope, Depends(On(P.ORG_MANAGE, "org"))]
) -> None:
    with scope.cp.transaction() as db:
        sso.delete_provider(db, sso.get_provider(db, org_id, provider_id))


@router.get("/v1/sso/oidc/{provider_id}/start", status_code=302,
            summary="Start an SSO login: redirects the browser to the identity provider")
def start(provider_id: str, cp: Public, return_to: str = Query("/")) -> RedirectResponse:
    response = RedirectResponse("/", 302)
    binder = _new_binder(cp, response)
    response.headers["location"] = OIDC.begin(cp, provider_id, return_to=return_to,
                                                 binder=binder)
    return response


@router.get("/v1/sso/oidc/callback", status_code=303,
            summary="Where the identity provider returns; logs in (or asks for the second "
            "factor, or links the identity) and redirects to return_to")
def callback(request: Request, cp: Public) -> RedirectResponse:
    """A browser (it accepts HTML) of a control plane serving the web UI that cannot be
    signed in is sent back into the UI with ``sso_error=<message>`` (to return_to when
    the login state was found, else the UI's root) instead of a JSON error page; every
    other caller gets the JSON error."""
    landing: str | None = None
    try:
        outcome = OIDC.complete(cp, dict(request.query_params),
                                   binder=request.cookies.get(BINDER_COOKIE))
        landing = outcome.return_to
        ticket = issued = None
        with cp.transaction() as db:
            user = sso.provision(cp, db, outcome)
            if outcome.link_user_id is None:
                provider = db.get(OidcProvider, outcome.provider_id)
                assert provider is not None
                if sso.needs_second_factor(db, user, provider, outcome.identity):
                    ticket = sso.open_mfa_ticket(cp, db, user, provider.id, outcome.return_to)
                else:
                    issued = create_session(cp, db, user, "oidc")
    except RequestError as exc:
        if not _to_the_ui(request):
            raise
        target = landing or request.scope.get("root_path", "") + "/"
        response = RedirectResponse(_with_query(target, sso_error=exc.message), 303)
        response.delete_cookie(BINDER_COOKIE, path="/")
        return response
    target = outcome.return_to
    if ticket is not None:
        target = _with_query(target, mfa="required")
    response = RedirectResponse(target, 303)
    response.delete_cookie(BINDER_COOKIE, path="/")
    if ticket is not None:
        _set_cookie(cp, response, MFA_COOKIE, ticket,
                    int(sso.MFA_TICKET_TTL.total_seconds()))
    if issued is not None:
        set_session_cookie(cp, response, issued)
    return response


def _with_query(target: str, **params: str) -> str:
    return target + ("&" if "?" in target else "?") + urlencode(params)


def _to_the_ui(request: Request) -> bool:
    """Whether the caller is a browser and this control plane serves the built web UI
    (:func:`apiary.control.api.routes_ui.install_ui` records where)."""
    ui_dir: Path | None = getattr(request.app.state, "ui_dir", None)
    return ("text/html" in request.headers.get("accept", "") and ui_dir is not None
            and (ui_dir / "index.html").is_file())


@router.post("/v1/auth/sso/discover", response_model=SsoDiscoverOut,
             summary="Which single sign-on provider serves an email address's domain (the "
             "sign-in page's \"Sign in with SSO\"): 404 when none does")
def sso_discover(body: SsoDiscoverRequest, request: Request, cp: Public) -> SsoDiscoverOut:
    """Only a domain an organization claimed **and an instance admin approved** is looked
    up (an unapproved claim could send anyone's users to an attacker's provider), and only
    the domain: the answer is the same whether or not an account with this address exists.
    Throttled per address like a login."""
    cp.throttle.admit_attempt(client_address(request, cp.settings.cp_trusted_proxies))
    if body.email.count("@") != 1 or not body.email.rsplit("@", 1)[1].strip():
        raise InvalidRequest("not a valid email address", field="email")
    domain = domains.domain_of(body.email)
    with cp.transaction() as db:
        provider = sso.provider_for_domain(db, domain)
        if provider is None:
            raise NotFound(f"no single sign-on provider serves {domain}: sign in with your "
                           "password, or ask your organization's admin", field="email")
        return SsoDiscoverOut(provider_id=provider.id, provider_name=provider.name,
                              domain=domain,
                              login_url=f"{cp.issuer}/v1/sso/oidc/{provider.id}/start")


@router.post("/v1/auth/sso/mfa", response_model=SessionOut,
             dependencies=[Depends(refuse_cross_site_login)],
             summary="Finish an SSO login that needs the account's second factor")
def sso_mfa(body: SsoMfaRequest, request: Request, response: Response,
            cp: Public) -> SessionOut:
    # Per address like every credential check; wrong codes also count per account inside
    # totp.verify_code / use_recovery_code (apiary.control.throttle).
    cp.throttle.admit_attempt(client_address(request, cp.settings.cp_trusted_proxies))
    issued = sso.finish_mfa(cp, request.cookies.get(MFA_COOKIE), totp_code=body.totp_code,
                            recovery_code=body.recovery_code)
    response.delete_cookie(MFA_COOKIE, path="/")
    set_session_cookie(cp, response, issued)
    return session_out(issued, True)


# --- the caller's linked identities ---------------------------------------------------


@router.post("/v1/me/identities/oidc/{provider_id}/link/start", response_model=LinkStartOut,
             summary="Link an SSO identity to this account: send the browser to the URL "
             "returned; the identity the IdP vouches for joins this account")
def link_start(provider_id: str, response: Response, caller: UserCaller,
               return_to: str = Query("/")) -> LinkStartOut:
    cp = caller.cp
    # A linked identity is a lasting way in: a stolen, older session must not add one.
    verification.require_recent_login(cp, caller.user.authenticated_at,
                                      "link a single sign-on identity")
    with cp.transaction() as db:
        user = db.get(User, caller.user.user_id)
        assert user is not None
        verification.require_verified(user, "link a single sign-on identity")
    binder = _new_binder(cp, response)
    url = OIDC.begin(cp, provider_id, return_to=return_to, binder=binder,
                        link_user_id=user.id)
    return LinkStartOut(authorization_url=url)


@router.get("/v1/me/identities", response_model=list[IdentityOut],
            summary="SSO identities linked to this account")
def list_identities(caller: UserCaller) -> list[IdentityOut]:
    with caller.cp.transaction() as db:
        return [IdentityOut(id=link.id, provider_id=provider.id, provider_name=provider.name,
                            org_id=link.org_id, subject=link.subject, email=link.email,
                            created_at=link.created_at)
                for link, provider in sso.list_identities(db, caller.user.user_id)]


@router.delete("/v1/me/identities/{identity_id}", status_code=204,
               summary="Unlink an SSO identity (not the only way into a password-less account)")
def unlink_identity(identity_id: str, caller: UserCaller) -> None:
    with caller.cp.transaction() as db:
        user = db.get(User, caller.user.user_id)
        assert user is not None
        sso.unlink_identity(db, user, identity_id)


# --- organization SSO settings and email domains ------------------------------------


@router.get("/v1/orgs/{org_id}/sso/settings", response_model=SsoSettingsOut)
def get_settings(
    org_id: str, scope: Annotated[Scope, Depends(On(P.ORG_READ, "org"))]
) -> SsoSettingsOut:
    with scope.cp.transaction() as db:
        org = get_org(db, org_id)
        return SsoSettingsOut(org_id=org.id, trust_idp_mfa=org.trust_idp_mfa)


@router.put("/v1/orgs/{org_id}/sso/settings", response_model=SsoSettingsOut,
            summary="Whether SSO logins may skip the TOTP step when the IdP asserts MFA")
def put_settings(
    org_id: str, body: SsoSettings, scope: Annotated[Scope, Depends(On(P.ORG_MANAGE, "org"))]
) -> SsoSettingsOut:
    with scope.cp.transaction() as db:
        org = get_org(db, org_id)
        org.trust_idp_mfa = body.trust_idp_mfa
        return SsoSettingsOut(org_id=org.id, trust_idp_mfa=org.trust_idp_mfa)


def _domain_out(row: OrgDomain) -> DomainOut:
    return DomainOut(id=row.id, org_id=row.org_id, domain=row.domain,
                     created_at=row.created_at, approved=row.approved_at is not None,
                     approved_at=row.approved_at)


@router.get("/v1/orgs/{org_id}/domains", response_model=list[DomainOut])
def list_domains(
    org_id: str, scope: Annotated[Scope, Depends(On(P.ORG_READ, "org"))]
) -> list[DomainOut]:
    with scope.cp.transaction() as db:
        return [_domain_out(d) for d in domains.list_claims(db, org_id)]


@router.post("/v1/orgs/{org_id}/domains", response_model=DomainOut, status_code=201,
             summary="Claim an email domain for SSO; effective once an instance admin "
             "approves it")
def claim_domain(
    org_id: str, body: DomainClaimRequest,
    scope: Annotated[Scope, Depends(On(P.ORG_MANAGE, "org"))],
) -> DomainOut:
    with scope.cp.transaction() as db:
        return _domain_out(domains.claim(scope.cp, db, org_id=org_id, domain=body.domain,
                                         created_by=scope.user_id))


@router.delete("/v1/orgs/{org_id}/domains/{domain_id}", status_code=204)
def delete_domain(
    org_id: str, domain_id: str, scope: Annotated[Scope, Depends(On(P.ORG_MANAGE, "org"))]
) -> None:
    with scope.cp.transaction() as db:
        db.delete(domains.get_claim(db, domain_id, org_id))


@router.get("/v1/admin/domains", response_model=list[DomainOut], tags=["admin"],
            summary="Every organization's domain claims (instance admins only)")
def admin_list_domains(caller: UserCaller) -> list[DomainOut]:
    with caller.cp.transaction() as db:
        domains.require_instance_admin(db.get(User, caller.user.user_id))
        return [_domain_out(d) for d in domains.list_claims(db)]


@router.post("/v1/admin/domains/{domain_id}/approve", response_model=DomainOut,
             tags=["admin"], summary="Approve an organization's domain claim (instance "
             "admins only): its IdPs become trusted for that domain, within that org")
def admin_approve_domain(domain_id: str, caller: UserCaller) -> DomainOut:
    with caller.cp.transaction() as db:
        domains.require_instance_admin(db.get(User, caller.user.user_id))
        row = domains.approve(caller.cp, db, domains.get_claim(db, domain_id),
                              approved_by=caller.user.subject)
        return _domain_out(row)


__all__ = ["BINDER_COOKIE", "MFA_COOKIE", "router"]
