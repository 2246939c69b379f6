"""Login CSRF through OIDC (issue item 5): the attacker starts a login at their own IdP
account and sends the victim the callback URL, so that the victim's browser would finish
the attacker's login. The state is bound to the browser that started it (an HttpOnly,
SameSite=Lax binder cookie); any other browser is refused."""

from __future__ import annotations

from control._tenants import error_code, make_tenant
from control.oidc_provider import LocalOidcProvider
from control.test_oidc import callback_path
from fastapi.testclient import TestClient

from apiary.control import ControlPlane
from apiary.control.identity.oidc import pending_logins

from ._sso import idp, register_provider, settings_overrides

__all__ = ["idp", "settings_overrides"]  # fixtures


def _victim_browser(client: TestClient) -> TestClient:
    return TestClient(client.app, follow_redirects=False)


def test_login_csrf_victim_browser_cannot_finish_the_attackers_login(
    client: TestClient, idp: LocalOidcProvider
) -> None:
    tenant = make_tenant(client, "Evil")
    attackers_callback = callback_path(client, register_provider(
        client, tenant.owner, tenant.org_id, idp))
    with _victim_browser(client) as victim:
        response = victim.get(attackers_callback)
    assert error_code(response, 401) == "unauthenticated"
    assert "binder cookie is missing" in response.json()["message"]
    assert "apiary_session=" not in response.headers.get("set-cookie", "")


def test_login_csrf_with_the_victims_own_binder_is_refused(
    client: TestClient, idp: LocalOidcProvider, cp: ControlPlane
) -> None:
    tenant = make_tenant(client, "Evil")
    provider_id = register_provider(client, tenant.owner, tenant.org_id, idp)
    attackers_callback = callback_path(client, provider_id)
    with _victim_browser(client) as victim:
        started = victim.get(f"/v1/sso/oidc/{provider_id}/start")  # the victim's own login
        assert started.status_code == 302
        response = victim.get(attackers_callback)
    assert error_code(response, 401) == "unauthenticated"
    assert "started in another browser" in response.json()["message"]
    assert "apiary_session=" not in response.headers.get("set-cookie", "")
    assert pending_logins(cp) == 1  # the attacker's state is spent; the victim's remains


def test_binder_cookie_is_httponly_and_samesite_lax(
    client: TestClient, idp: LocalOidcProvider
) -> None:
    tenant = make_tenant(client, "Corp")
    provider_id = register_provider(client, tenant.owner, tenant.org_id, idp)
    cookie = client.get(f"/v1/sso/oidc/{provider_id}/start").headers["set-cookie"].lower()
    assert cookie.startswith("apiary_sso_binder=")
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    # The same browser finishes its own login.
    assert client.get(callback_path(client, provider_id)).status_code == 303
