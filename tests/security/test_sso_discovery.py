""""Sign in with SSO" asks which provider serves an email's domain
(``POST /v1/auth/sso/discover``). An attacker probes it for accounts, or registers their own
provider and claims someone else's domain to send that domain's users to it."""

from __future__ import annotations

from control._tenants import auth, error_code, ok, signup
from control.oidc_provider import LocalOidcProvider
from fastapi.testclient import TestClient

from apiary.control import ControlPlane

from ._sso import idp, make_admin, register_provider, settings_overrides

__all__ = ["idp", "settings_overrides"]  # fixtures


def _discover(client: TestClient, email: str) -> tuple[int, dict[str, object]]:
    response = client.post("/v1/auth/sso/discover", json={"email": email})
    return response.status_code, response.json()


def test_only_an_approved_domain_of_an_enabled_provider_is_discovered(
        client: TestClient, cp: ControlPlane, idp: LocalOidcProvider) -> None:
    admin_session, org_id = make_admin(client, cp)
    provider_id = register_provider(client, admin_session, org_id, idp)
    assert error_code(client.post("/v1/auth/sso/discover", json={"email": "a@corp.example"}),
                      404) == "not_found"  # no claim yet

    claim = ok(client.post(f"/v1/orgs/{org_id}/domains", json={"domain": "corp.example"},
                           headers=auth(admin_session)), 201)
    assert _discover(client, "a@corp.example")[0] == 404  # claimed, not approved
    ok(client.post(f"/v1/admin/domains/{claim['id']}/approve", headers=auth(admin_session)))

    status, found = _discover(client, "Someone@Corp.Example")
    assert status == 200, found
    assert found["provider_id"] == provider_id
    assert found["domain"] == "corp.example"
    assert str(found["login_url"]).endswith(f"/v1/sso/oidc/{provider_id}/start")
    assert _discover(client, "a@sub.corp.example")[0] == 404  # a subdomain is its own

    ok(client.patch(f"/v1/orgs/{org_id}/sso/oidc/{provider_id}", json={"enabled": False},
                    headers=auth(admin_session)))
    assert _discover(client, "a@corp.example")[0] == 404  # a disabled provider serves none


def test_an_attacker_s_unapproved_claim_sends_nobody_to_their_provider(
        client: TestClient, cp: ControlPlane, idp: LocalOidcProvider) -> None:
    mallory = signup(client, "mallory@evil.example")
    evil = ok(client.post("/v1/orgs", json={"name": "Evil"}, headers=auth(mallory)), 201)
    register_provider(client, mallory, evil["id"], idp)
    ok(client.post(f"/v1/orgs/{evil['id']}/domains", json={"domain": "victim.example"},
                   headers=auth(mallory)), 201)
    assert _discover(client, "ceo@victim.example")[0] == 404


def test_the_answer_says_nothing_about_accounts_and_is_throttled(
        client: TestClient, cp: ControlPlane) -> None:
    signup(client, "exists@nosso.example")
    existing = client.post("/v1/auth/sso/discover", json={"email": "exists@nosso.example"})
    missing = client.post("/v1/auth/sso/discover", json={"email": "ghost@nosso.example"})
    assert existing.status_code == missing.status_code == 404
    assert existing.json() == missing.json()  # domain-level only: the same answer
    assert error_code(client.post("/v1/auth/sso/discover", json={"email": "no-at-sign"}),
                      400) == "invalid_request"
    assert client.post("/v1/auth/sso/discover", json={"email": "a@b.example",
                                                       "extra": 1}).status_code == 400
    statuses = {client.post("/v1/auth/sso/discover",
                            json={"email": f"u{i}@probe.example"}).status_code
                for i in range(60)}
    assert 429 in statuses  # the per-address budget of credential checks
