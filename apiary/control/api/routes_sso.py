"""SSO endpoints: OIDC provider configuration per organization (``org:manage``), and the
browser-facing login redirects (public)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.requests import Request
from starlette.responses import RedirectResponse

from apiary.control.api._guards import PUBLIC, On, Scope
from apiary.control.api.routes_auth import set_session_cookie
from apiary.control.api.schemas import OidcProviderCreate, OidcProviderOut, OidcProviderUpdate
from apiary.control.db import OidcProvider, Role
from apiary.control.identity import sso
from apiary.control.identity.sessions import create_session
from apiary.control.permissions import Permission as P
from apiary.control.service import ControlPlane

router = APIRouter(tags=["sso"])

Public = Annotated[ControlPlane, Depends(PUBLIC)]


def _out(cp: ControlPlane, provider: OidcProvider, role: Role) -> OidcProviderOut:
    return OidcProviderOut(
        id=provider.id, org_id=provider.org_id, name=provider.name, issuer=provider.issuer,
        client_id=provider.client_id, scopes=provider.scopes, default_role=role.name,
        enabled=provider.enabled, redirect_uri=cp.oidc.redirect_uri(cp),
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
    return RedirectResponse(cp.oidc.begin(cp, provider_id, return_to=return_to), 302)


@router.get("/v1/sso/oidc/callback", status_code=303,
            summary="Where the identity provider returns; logs in and redirects to return_to")
def callback(request: Request, cp: Public) -> RedirectResponse:
    outcome = cp.oidc.complete(cp, dict(request.query_params))
    with cp.transaction() as db:
        user = sso.provision(cp, db, outcome)
        issued = create_session(cp, db, user, "oidc")
    response = RedirectResponse(outcome.return_to, 303)
    set_session_cookie(cp, response, issued)
    return response
