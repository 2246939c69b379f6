"""Every control-plane route states the permission it needs, through exactly one guard."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

from apiary.control import ControlPlane
from apiary.control.api import create_control_plane_app
from apiary.control.permissions import Permission

# Routes that need nothing from the caller, and why.
PUBLIC = {
    "/.well-known/jwks.json",  # public keys
    "/v1/auth/token",  # authenticates the key or session itself
    "/v1/auth/signup", "/v1/auth/login",
    "/v1/sso/oidc/{provider_id}/start", "/v1/sso/oidc/callback",
    "/v1/auth/email/verify",  # the mailed link's token is the credential
    "/v1/auth/sso/mfa",  # the pending-MFA cookie and the code are the credentials
    "/v1/auth/sso/discover",  # which provider serves a domain (throttled, domain-level)
    "/v1/data-planes/register",  # the one-time bootstrap token is the credential (throttled)
    "/healthz",
}


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every APIRoute, also inside included routers (our routers have no prefixes)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found.extend(_api_routes(route.original_router.routes))
    return found


def _guards(route: APIRoute) -> list[str]:
    return [d.call.apiary_permission for d in route.dependant.dependencies
            if d.call is not None and hasattr(d.call, "apiary_permission")]


def test_every_route_declares_one_permission(cp: ControlPlane) -> None:
    app = create_control_plane_app(cp)
    routes = _api_routes(list(app.routes))
    assert len(routes) > 50
    catalog = {p.value for p in Permission} | {"authenticated", "authenticated:user", "public"}
    for route in routes:
        guards = _guards(route)
        if route.path == "/healthz":
            assert guards == []
            continue
        assert len(guards) == 1, (route.path, route.methods, guards)
        assert guards[0] in catalog
        assert (guards[0] == "public") == (route.path in PUBLIC), route.path


def test_health(cp: ControlPlane) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_control_plane_app(cp)) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        missing = client.get("/v1/nowhere")
        assert missing.status_code == 404
        assert missing.json()["errorCode"] == "not_found"
