"""OIDC single sign-on end to end, against a real local provider over HTTP: the
authorization-code flow with PKCE, state and nonce, ID-token validation, provisioning
and linking by verified email, and the attacks the client must refuse."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from apiary.control import ControlPlane
from apiary.control.db import User
from apiary.control.identity.oidc import pending_logins
from apiary.errors import AuthenticationFailed

from ._tenants import Tenant, add_member, auth, error_code, make_tenant, ok, signup, user_id
from .conftest import ISSUER, FakeClock
from .oidc_provider import LocalOidcProvider


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # The test provider serves plain http on loopback: the operator's allow-list admits it.
    return {"outbound_allowlist": ["127.0.0.1"]}


@pytest.fixture(params=["RS256", "ES256"])
def provider(request: pytest.FixtureRequest) -> Iterator[LocalOidcProvider]:
    idp = LocalOidcProvider(algorithm=request.param)
    idp.start()
    yield idp
    idp.stop()


def configure(client: TestClient, t: Tenant, idp: LocalOidcProvider, **overrides: Any) -> str:
    body = {"name": "Corp IdP", "issuer": idp.issuer, "client_id": idp.client_id,
            "client_secret": idp.client_secret, "default_role": "member", **overrides}
    created = ok(client.post(f"/v1/orgs/{t.org_id}/sso/oidc", json=body,
                             headers=auth(t.owner)), 201)
    assert created["redirect_uri"] == f"{ISSUER}/v1/sso/oidc/callback"
    return str(created["id"])


def callback_path(client: TestClient, provider_id: str, return_to: str = "/traces") -> str:
    """Act as the browser: CP start → provider login → back to the CP; the callback path."""
    start = client.get(f"/v1/sso/oidc/{provider_id}/start", params={"return_to": return_to})
    assert start.status_code == 302, start.text
    with httpx.Client() as browser:
        at_idp = browser.get(start.headers["location"])
    assert at_idp.status_code == 302, at_idp.text
    location = at_idp.headers["location"]
    assert location.startswith(f"{ISSUER}/v1/sso/oidc/callback?")
    parts = urlsplit(location)
    return f"{parts.path.removeprefix(urlsplit(ISSUER).path)}?{parts.query}"


def sso_login(client: TestClient, provider_id: str, return_to: str = "/traces") -> httpx.Response:
    response = client.get(callback_path(client, provider_id, return_to))
    return response


def test_first_login_provisions_a_member_with_a_session(
    client: TestClient, provider: LocalOidcProvider
) -> None:
    t = make_tenant(client, "A")
    provider_id = configure(client, t, provider)
    response = sso_login(client, provider_id)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/traces"
    assert "apiary_session=" in response.headers["set-cookie"]
    me = ok(client.get("/v1/me"))  # the session cookie from the callback
    client.cookies.clear()
    assert me["user"]["email"] == "alice@corp.example"
    assert me["user"]["has_password"] is False  # SSO only: the Security tab has no password
    assert [(m["org_id"], m["role"]) for m in me["memberships"]] == [(t.org_id, "member")]
    assert provider.token_requests == [{"auth": "basic"}]


def link_via_browser(client: TestClient, provider_id: str, session: str) -> httpx.Response:
    """Act as the logged-in user's browser: link start → provider login → the callback."""
    started = ok(client.post(f"/v1/me/identities/oidc/{provider_id}/link/start",
                             headers=auth(session)))
    with httpx.Client() as browser:
        at_idp = browser.get(started["authorization_url"])
    parts = urlsplit(at_idp.headers["location"])
    return client.get(f"{parts.path.removeprefix(urlsplit(ISSUER).path)}?{parts.query}")


def test_an_existing_account_is_linked_explicitly_then_found_by_subject(
    client: TestClient, provider: LocalOidcProvider
) -> None:
    # Changed by the identity-linking fix: a matching email alone no longer links (409); the
    # account holder links the identity while logged in.
    t = make_tenant(client, "A")
    session = signup(client, "Alice@Corp.example")
    existing = user_id(client, session)
    provider_id = configure(client, t, provider)
    refused = sso_login(client, provider_id)
    assert error_code(refused, 409) == "conflict"
    assert "link it from your account settings" in refused.json()["message"]
    assert "apiary_session=" not in refused.headers.get("set-cookie", "")
    client.cookies.clear()
    linked = link_via_browser(client, provider_id, session)
    assert linked.status_code == 303, linked.text
    assert "apiary_session=" not in linked.headers.get("set-cookie", "")
    client.cookies.clear()
    identities = ok(client.get("/v1/me/identities", headers=auth(session)))
    assert [(i["provider_id"], i["subject"]) for i in identities] == [
        (provider_id, "alice-at-idp")]
    assert sso_login(client, provider_id).status_code == 303
    assert ok(client.get("/v1/me"))["user"]["id"] == existing
    client.cookies.clear()
    # Later logins find the user by subject, whatever email the IdP reports now.
    provider.next_identity = {**provider.next_identity, "email": "alice.new@corp.example"}
    assert sso_login(client, provider_id).status_code == 303
    assert ok(client.get("/v1/me"))["user"]["id"] == existing
    client.cookies.clear()


def test_a_claimed_and_approved_domain_links_the_orgs_own_verified_member(
    client: TestClient, provider: LocalOidcProvider, cp: ControlPlane
) -> None:
    t = make_tenant(client, "A")
    member = add_member(client, t, "alice@corp.example", "member")
    provider_id = configure(client, t, provider)
    claim = ok(client.post(f"/v1/orgs/{t.org_id}/domains", json={"domain": "Corp.Example"},
                           headers=auth(t.owner)), 201)
    assert (claim["domain"], claim["approved"]) == ("corp.example", False)
    assert error_code(sso_login(client, provider_id), 409) == "conflict"  # not approved yet
    client.cookies.clear()
    # Only an instance admin approves; the org's owner is not one.
    assert error_code(client.post(f"/v1/admin/domains/{claim['id']}/approve",
                                  headers=auth(t.owner)), 403) == "forbidden"
    with cp.transaction() as db:
        owner = db.get(User, user_id(client, t.owner))
        assert owner is not None
        owner.is_instance_admin = True
    approved = ok(client.post(f"/v1/admin/domains/{claim['id']}/approve",
                              headers=auth(t.owner)))
    assert approved["approved"] is True
    assert sso_login(client, provider_id).status_code == 303
    assert ok(client.get("/v1/me"))["user"]["id"] == user_id(client, member)
    client.cookies.clear()


def test_new_users_start_verified_only_on_the_orgs_approved_domain(
    client: TestClient, provider: LocalOidcProvider, cp: ControlPlane
) -> None:
    t = make_tenant(client, "A")
    provider_id = configure(client, t, provider)
    # No approved domain: an SSO-only account (no password), unverified, in this org only.
    assert sso_login(client, provider_id).status_code == 303
    me = ok(client.get("/v1/me"))
    client.cookies.clear()
    assert me["user"]["email_verified"] is False
    assert [m["org_id"] for m in me["memberships"]] == [t.org_id]
    created = client.post("/v1/orgs", json={"name": "Mine"},
                          headers=auth(_session_of(client, provider_id)))
    assert error_code(created, 403) == "email_not_verified"
    # On an approved domain of the org, a new account starts verified.
    claim = ok(client.post(f"/v1/orgs/{t.org_id}/domains", json={"domain": "corp.example"},
                           headers=auth(t.owner)), 201)
    with cp.transaction() as db:
        owner = db.get(User, user_id(client, t.owner))
        assert owner is not None
        owner.is_instance_admin = True
    ok(client.post(f"/v1/admin/domains/{claim['id']}/approve", headers=auth(t.owner)))
    provider.next_identity = {"sub": "bob-at-idp", "email": "bob@corp.example",
                              "email_verified": True, "name": "Bob"}
    assert sso_login(client, provider_id).status_code == 303
    assert ok(client.get("/v1/me"))["user"]["email_verified"] is True
    client.cookies.clear()


def _session_of(client: TestClient, provider_id: str) -> str:
    response = sso_login(client, provider_id)
    token = response.cookies.get("apiary_session")
    client.cookies.clear()
    assert token
    return str(token)


def test_an_identity_links_to_one_account_and_the_last_way_in_stays(
    client: TestClient, provider: LocalOidcProvider
) -> None:
    t = make_tenant(client, "A")
    provider_id = configure(client, t, provider)
    alice = signup(client, "alice.personal@example.com")
    bob = signup(client, "bob@example.com")
    assert link_via_browser(client, provider_id, alice).status_code == 303
    client.cookies.clear()
    taken = link_via_browser(client, provider_id, bob)
    assert error_code(taken, 409) == "conflict"
    client.cookies.clear()
    unverified = signup(client, "carol@example.com", verify=False)
    refused = client.post(f"/v1/me/identities/oidc/{provider_id}/link/start",
                          headers=auth(unverified))
    assert error_code(refused, 403) == "email_not_verified"
    [identity] = ok(client.get("/v1/me/identities", headers=auth(alice)))
    assert error_code(client.delete(f"/v1/me/identities/{identity['id']}", headers=auth(bob)),
                      404) == "not_found"
    ok(client.delete(f"/v1/me/identities/{identity['id']}", headers=auth(alice)), 204)
    assert ok(client.get("/v1/me/identities", headers=auth(alice))) == []
    # A password-less SSO account cannot drop its only way in.
    provider.next_identity = {"sub": "dave", "email": "dave@corp.example",
                              "email_verified": True}
    dave = _session_of(client, provider_id)
    [link] = ok(client.get("/v1/me/identities", headers=auth(dave)))
    assert error_code(client.delete(f"/v1/me/identities/{link['id']}", headers=auth(dave)),
                      409) == "conflict"


def test_unverified_email_is_refused(client: TestClient, provider: LocalOidcProvider) -> None:
    t = make_tenant(client, "A")
    signup(client, "alice@corp.example")
    provider.next_identity = {**provider.next_identity, "email_verified": False}
    response = sso_login(client, configure(client, t, provider))
    assert error_code(response, 401) == "unauthenticated"
    assert "email_verified" in response.json()["message"]


def test_nonce_mismatch_is_refused(client: TestClient, provider: LocalOidcProvider) -> None:
    t = make_tenant(client, "A")
    provider.wrong_nonce = True
    response = sso_login(client, configure(client, t, provider))
    assert error_code(response, 401) == "unauthenticated"
    assert "nonce" in response.json()["message"]


def test_state_is_single_use(
    client: TestClient, provider: LocalOidcProvider, cp: ControlPlane
) -> None:
    t = make_tenant(client, "A")
    path = callback_path(client, configure(client, t, provider))
    assert pending_logins(cp) == 1
    assert client.get(path).status_code == 303
    client.cookies.clear()
    assert pending_logins(cp) == 0
    assert error_code(client.get(path), 401) == "unauthenticated"


def test_an_unknown_state_is_refused(client: TestClient) -> None:
    response = client.get("/v1/sso/oidc/callback", params={"code": "c", "state": "forged"})
    assert error_code(response, 401) == "unauthenticated"


def test_slow_logins_expire(
    client: TestClient, provider: LocalOidcProvider, clock: FakeClock
) -> None:
    t = make_tenant(client, "A")
    path = callback_path(client, configure(client, t, provider))
    clock.advance(11 * 60)
    assert error_code(client.get(path), 401) == "unauthenticated"


def test_wrong_client_secret_is_refused_by_the_provider(
    client: TestClient, provider: LocalOidcProvider
) -> None:
    t = make_tenant(client, "A")
    response = sso_login(client, configure(client, t, provider, client_secret="wrong"))
    assert error_code(response, 401) == "unauthenticated"


def test_an_algorithm_the_provider_does_not_announce_is_refused(
    client: TestClient, provider: LocalOidcProvider
) -> None:
    t = make_tenant(client, "A")
    provider.announced_algorithms = ["ES256" if provider.algorithm == "RS256" else "RS256"]
    response = sso_login(client, configure(client, t, provider))
    assert error_code(response, 401) == "unauthenticated"
    assert "algorithm" in response.json()["message"]


def test_return_to_never_leaves_the_site(client: TestClient, provider: LocalOidcProvider) -> None:
    t = make_tenant(client, "A")
    provider_id = configure(client, t, provider)
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example"):
        response = sso_login(client, provider_id, return_to=target)
        client.cookies.clear()
        assert response.headers["location"] == "/"


def test_disabled_provider_cannot_start(client: TestClient, provider: LocalOidcProvider) -> None:
    t = make_tenant(client, "A")
    provider_id = configure(client, t, provider)
    ok(client.patch(f"/v1/orgs/{t.org_id}/sso/oidc/{provider_id}", json={"enabled": False},
                    headers=auth(t.owner)))
    assert error_code(client.get(f"/v1/sso/oidc/{provider_id}/start"), 404) == "not_found"


def test_id_token_validation_refuses_forgeries(
    cp: ControlPlane, provider: LocalOidcProvider
) -> None:
    metadata = cp.oidc.metadata(provider.issuer)
    now = int(time.time())
    good = {"iss": provider.issuer, "aud": provider.client_id, "sub": "s", "iat": now,
            "exp": now + 300, "nonce": "n"}

    def check(token: str) -> dict[str, Any]:
        return cp.oidc.validate_id_token(token, metadata=metadata, client_id=provider.client_id,
                                         nonce="n", now=cp.now().timestamp())

    assert check(provider.sign(good))["sub"] == "s"
    public_pem = provider.jwks()["keys"][0]
    forgeries = {
        "wrong issuer": provider.sign({**good, "iss": "https://evil.example"}),
        "wrong audience": provider.sign({**good, "aud": "someone-else"}),
        "expired": provider.sign({**good, "exp": now - 3600, "iat": now - 4000}),
        "issued in the future": provider.sign({**good, "iat": now + 3600, "exp": now + 4000}),
        "several audiences, no azp": provider.sign({**good, "aud": [provider.client_id, "x"]}),
        "alg none": jwt.encode(good, None, algorithm="none", headers={"kid": "key-RS256"}),
        "HS256 with the public key": jwt.encode(
            good, str(public_pem).encode().ljust(32, b"x"), algorithm="HS256",
            headers={"kid": f"key-{provider.algorithm}"}),
        "tampered payload": _tamper(provider.sign(good)),
        "unknown kid": jwt.encode(good, provider._keys[provider.algorithm],  # type: ignore[arg-type]
                                  algorithm=provider.algorithm, headers={"kid": "nope"}),
    }
    accepted = []
    for name, token in forgeries.items():
        try:
            check(token)
            accepted.append(name)
        except AuthenticationFailed:
            pass
    assert accepted == []


def _tamper(token: str) -> str:
    import base64
    import json

    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"
