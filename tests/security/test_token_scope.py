"""Token audiences and scopes (issue item 3): a data-plane token is no control-plane
credential, a control-plane token cannot manage keys or members, and management needs a
session that logged in recently.

The attacker holds what leaks most easily: a 5-minute data-plane token (a log line, a
compromised data plane), a control-plane token, an API key, or a session cookie left open
for hours. Each is refused with a precise 4xx; the control plane is real (cpdb on SQLite and
on PostgreSQL), and so is the data plane's token verifier and configuration client, talking
HTTP to it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pyotp
import pytest
from _servers import http_server
from control._tenants import (
    PASSWORD,
    Tenant,
    add_member,
    auth,
    error_code,
    exchange,
    make_tenant,
    ok,
    project_key,
    signup,
    user_id,
    verify,
)
from control.test_routes import PUBLIC, _api_routes, _guards
from fastapi.testclient import TestClient

from apiary.control import ControlPlane
from apiary.control.api import create_control_plane_app
from apiary.control.permissions import DATA_PLANE, KEY_GRANTABLE, sorted_values
from apiary.control.signing import ALGORITHM
from apiary.dataplane.auth import JwksCache, JwtAuthenticator
from apiary.dataplane.auth import Permission as DpPermission
from apiary.dataplane.replica.control_plane import ControlPlaneClient
from apiary.errors import PermissionDenied

from .conftest import DATA_PLANE_ID, ISSUER, FakeClock

MANAGEMENT = {"keys:manage", "members:manage", "org:manage", "workspace:manage",
              "project:manage"}


def _dp_token(client: TestClient, session: str, project_id: str) -> str:
    return str(ok(exchange(client, session, project_id=project_id))["access_token"])


def _cp_token(client: TestClient, credential: str, **body: Any) -> str:
    return str(ok(client.post("/v1/auth/token", json={"audience": ISSUER, **body},
                              headers=auth(credential)))["access_token"])


def _mint_key(client: TestClient, tenant: Tenant, credential: str) -> Any:
    return client.post(f"/v1/projects/{tenant.project_id}/keys", json={"name": "backdoor"},
                       headers=auth(credential))


def _add_member(client: TestClient, tenant: Tenant, credential: str, user: str) -> Any:
    # On the project: the node a project key or a project's token can see at all.
    return client.post(f"/v1/orgs/{tenant.org_id}/memberships", headers=auth(credential),
                       json={"user_id": user, "role": "admin", "project_id": tenant.project_id})


def _admin(client: TestClient, tenant: Tenant) -> str:
    return add_member(client, tenant, f"admin-{uuid.uuid4().hex[:6]}@corp.example", "admin")


def test_a_users_data_plane_token_carries_no_management_permission(
    client: TestClient
) -> None:
    tenant = make_tenant(client, "Corp")
    for who in (_admin(client, tenant), tenant.owner):
        claims = verify(client, _dp_token(client, who, tenant.project_id))
        granted = set(claims["permissions"])
        assert granted <= set(sorted_values(DATA_PLANE))
        assert not granted & MANAGEMENT
        assert not set(claims["workspace_permissions"]) & MANAGEMENT
        # Data-plane permissions are all there: the role's scope is intact otherwise.
        assert {"events:write", "proxy:use", "proxy:manage"} <= granted
        # An org-level role holds them on the workspace itself.
        assert "proxy:manage" in claims["workspace_permissions"]


def test_a_project_admins_token_holds_nothing_on_the_workspace(client: TestClient) -> None:
    # A project-level admin must not manage what every project of the workspace shares.
    tenant = make_tenant(client, "Corp")
    project_admin = add_member(client, tenant, "padmin@corp.example", "admin",
                               project_id=tenant.project_id)
    claims = verify(client, _dp_token(client, project_admin, tenant.project_id))
    assert "proxy:manage" in claims["permissions"]
    assert claims["workspace_permissions"] == []


def test_a_stolen_data_plane_token_is_refused_on_every_control_plane_route(
    client: TestClient
) -> None:
    tenant = make_tenant(client, "Corp")
    token = _dp_token(client, tenant.owner, tenant.project_id)
    ids = {"org_id": tenant.org_id, "workspace_id": tenant.workspace_id,
           "project_id": tenant.project_id}
    routes = [r for r in _api_routes(list(client.app.routes))  # type: ignore[attr-defined]
              if r.path not in PUBLIC or r.path == "/v1/auth/token"]
    assert len(routes) > 50
    for route in routes:
        assert _guards(route) != ["public"] or route.path == "/v1/auth/token"
        path = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), str(uuid.uuid4())),
                      route.path)
        # Guards run before the body is validated; the token endpoint checks its credential
        # in the handler, after validation, so it gets a valid body.
        body = {"audience": ISSUER} if route.path == "/v1/auth/token" else {}
        for method in sorted(route.methods or ()):
            response = client.request(method, path, headers=auth(token), json=body)
            assert response.status_code == 401, (method, route.path, response.text)
            assert response.json()["errorCode"] == "unauthenticated"
            if route.path != "/v1/auth/token":
                assert "issued for a data plane" in response.json()["message"]
    # Nothing was created with it.
    assert len(ok(client.get(f"/v1/projects/{tenant.project_id}/keys",
                             headers=auth(tenant.owner)))) == 0


def test_a_stolen_data_plane_token_cannot_mint_an_api_key_or_add_a_member(
    client: TestClient
) -> None:
    tenant = make_tenant(client, "Corp")
    admin = _admin(client, tenant)
    token = _dp_token(client, admin, tenant.project_id)
    attacker = user_id(client, signup(client, "mallory@evil.example"))
    assert error_code(_mint_key(client, tenant, token), 401) == "unauthenticated"
    assert error_code(_add_member(client, tenant, token, attacker), 401) == "unauthenticated"
    invite = client.post(f"/v1/orgs/{tenant.org_id}/invitations", headers=auth(token),
                         json={"email": "mallory@evil.example", "role": "owner"})
    assert error_code(invite, 401) == "unauthenticated"
    # Nor trade it for a control-plane token.
    traded = client.post("/v1/auth/token", json={"audience": ISSUER}, headers=auth(token))
    assert error_code(traded, 401) == "unauthenticated"


def test_a_stolen_control_plane_token_cannot_manage_keys_or_members(
    client: TestClient
) -> None:
    tenant = make_tenant(client, "Corp")
    token = _cp_token(client, tenant.owner, project_id=tenant.project_id)
    claims = verify(client, token, audience=ISSUER)
    assert not set(claims["permissions"]) & {"keys:manage", "members:manage", "org:manage"}
    minted = _mint_key(client, tenant, token)
    assert error_code(minted, 401) == "reauthentication_required"
    assert "session" in minted.json()["message"]
    me = ok(client.get("/v1/me", headers=auth(tenant.owner)))["user"]["id"]
    assert error_code(_add_member(client, tenant, token, me), 401) == \
        "reauthentication_required"
    # What it may do, it does: read the project.
    ok(client.get(f"/v1/projects/{tenant.project_id}", headers=auth(token)))


def test_a_forged_control_plane_token_claiming_key_management_cannot_mint_a_key(
    client: TestClient, cp: ControlPlane
) -> None:
    # Even a token carrying keys:manage (signed by the control plane's own key, as an
    # insider with the signing key's ciphertext could not, but a future bug might) is
    # never a session.
    tenant = make_tenant(client, "Corp")
    with cp.transaction() as db:
        key = cp.signing.current(db)
        private = cp.signing.private_key(key)
    now = int(cp.now().timestamp())
    forged = jwt.encode({
        "iss": ISSUER, "aud": ISSUER, "sub": "user:forged", "iat": now, "nbf": now,
        "exp": now + 300, "jti": str(uuid.uuid4()), "org_id": tenant.org_id,
        "workspace_id": tenant.workspace_id, "project_id": tenant.project_id,
        "permissions": ["keys:manage", "members:manage", "project:read"]},
        private, algorithm=ALGORITHM, headers={"kid": key.kid})
    assert error_code(_mint_key(client, tenant, forged), 401) == "reauthentication_required"


def test_an_api_key_cannot_mint_keys_or_manage_members(client: TestClient) -> None:
    tenant = make_tenant(client, "Corp")
    key = project_key(client, tenant, sorted_values(KEY_GRANTABLE))
    minted = _mint_key(client, tenant, key)
    assert error_code(minted, 401) == "reauthentication_required"
    assert "API keys" in minted.json()["message"]
    invite = client.post(f"/v1/orgs/{tenant.org_id}/invitations", headers=auth(key),
                         json={"email": "mallory@evil.example", "role": "admin",
                               "project_id": tenant.project_id})
    assert error_code(invite, 401) == "reauthentication_required"
    # Another tenant's key learns nothing about this project: still 404.
    other = project_key(client, make_tenant(client, "Other"), sorted_values(KEY_GRANTABLE))
    assert error_code(_mint_key(client, tenant, other), 404) == "not_found"


def test_a_session_older_than_the_recent_auth_window_cannot_mint_a_key_until_it_reauthenticates(
    client: TestClient, cp: ControlPlane, clock: FakeClock
) -> None:
    tenant = make_tenant(client, "Corp")
    ok(_mint_key(client, tenant, tenant.owner), 201)  # fresh: allowed
    clock.advance(cp.settings.cp_recent_auth_s + 1)
    stale = _mint_key(client, tenant, tenant.owner)
    assert error_code(stale, 401) == "reauthentication_required"
    assert "/v1/auth/reauthenticate" in stale.json()["message"]
    me = ok(client.get("/v1/me", headers=auth(tenant.owner)))["user"]
    assert error_code(_add_member(client, tenant, tenant.owner, me["id"]), 401) == \
        "reauthentication_required"
    renamed = client.patch(f"/v1/orgs/{tenant.org_id}", json={"name": "pwned"},
                           headers=auth(tenant.owner))
    assert error_code(renamed, 401) == "reauthentication_required"
    # Everything else still works with the old session.
    ok(client.get(f"/v1/projects/{tenant.project_id}", headers=auth(tenant.owner)))
    # A wrong password does not refresh it.
    wrong = client.post("/v1/auth/reauthenticate", json={"password": "not the password"},
                        headers=auth(tenant.owner))
    assert error_code(wrong, 401) == "unauthenticated"
    assert error_code(_mint_key(client, tenant, tenant.owner), 401) == \
        "reauthentication_required"
    # The right one replaces the session: the old one ends, the new one may manage keys.
    fresh = ok(client.post("/v1/auth/reauthenticate", json={"password": PASSWORD},
                           headers=auth(tenant.owner)))
    client.cookies.clear()
    assert fresh["user"]["id"] == me["id"]
    assert error_code(client.get("/v1/me", headers=auth(tenant.owner)), 401) == \
        "unauthenticated"
    ok(_mint_key(client, tenant, fresh["session_token"]), 201)
    # ...for the window only.
    clock.advance(cp.settings.cp_recent_auth_s + 1)
    assert error_code(_mint_key(client, tenant, fresh["session_token"]), 401) == \
        "reauthentication_required"


def test_reauthentication_without_the_second_factor_is_refused(
    client: TestClient, cp: ControlPlane, clock: FakeClock
) -> None:
    tenant = make_tenant(client, "Corp")
    enrolment = ok(client.post("/v1/me/totp", headers=auth(tenant.owner)), 201)
    totp = pyotp.TOTP(enrolment["secret"])
    ok(client.post("/v1/me/totp/verify", headers=auth(tenant.owner),
                   json={"code": totp.at(clock.now)}))
    clock.advance(cp.settings.cp_recent_auth_s + 1)
    # A stolen session and the password are not enough.
    no_code = client.post("/v1/auth/reauthenticate", json={"password": PASSWORD},
                          headers=auth(tenant.owner))
    assert error_code(no_code, 401) == "mfa_required"
    assert error_code(_mint_key(client, tenant, tenant.owner), 401) == \
        "reauthentication_required"
    fresh = ok(client.post("/v1/auth/reauthenticate", headers=auth(tenant.owner),
                           json={"password": PASSWORD, "totp_code": totp.at(clock.now)}))
    client.cookies.clear()
    ok(_mint_key(client, tenant, fresh["session_token"]), 201)


def test_reauthentication_needs_a_session_not_a_key_or_token(client: TestClient) -> None:
    tenant = make_tenant(client, "Corp")
    key = project_key(client, tenant)
    for credential in (key, _cp_token(client, key)):
        response = client.post("/v1/auth/reauthenticate", json={"password": PASSWORD},
                               headers=auth(credential))
        assert error_code(response, 403) == "forbidden"


# --- the data plane's side ---------------------------------------------------------------


@pytest.fixture
def served(cp: ControlPlane) -> Iterator[str]:
    """The control plane over real HTTP, for the data plane's verifier and client."""
    with http_server(create_control_plane_app(cp)) as url:
        yield url


async def test_a_data_plane_ignores_permission_strings_it_does_not_know(
    client: TestClient, cp: ControlPlane, served: str
) -> None:
    tenant = make_tenant(client, "Corp")
    with cp.transaction() as db:
        key = cp.signing.current(db)
        private = cp.signing.private_key(key)
    now = int(cp.now().timestamp())
    token = jwt.encode({
        "iss": ISSUER, "aud": DATA_PLANE_ID, "sub": "key:odd", "iat": now, "nbf": now,
        "exp": now + 300, "jti": str(uuid.uuid4()), "org_id": tenant.org_id,
        "workspace_id": tenant.workspace_id, "project_id": tenant.project_id,
        "permissions": ["events:read", "keys:manage", "members:manage", "admin:*", ""],
        "workspace_permissions": ["proxy:manage", "org:manage", "future:thing"]},
        private, algorithm=ALGORITHM, headers={"kid": key.kid})
    jwks = JwksCache(served + "/.well-known/jwks.json")
    try:
        principal = await JwtAuthenticator(jwks, issuer=ISSUER, audience=DATA_PLANE_ID
                                           ).authenticate(token)
    finally:
        await jwks.aclose()
    assert principal.permissions == {DpPermission.EVENTS_READ}
    assert principal.workspace_permissions == {DpPermission.PROXY_MANAGE}


async def test_a_data_plane_never_forwards_a_token_to_the_control_plane(
    client: TestClient, served: str
) -> None:
    tenant = make_tenant(client, "Corp")
    key = project_key(client, tenant, ["prompts:read"])
    token = str(ok(exchange(client, key))["access_token"])
    seam = ControlPlaneClient(served)
    try:
        # The caller's key is forwarded and works...
        assert await seam.list_prompts(key, tenant.project_id) == []
        # ...a token is refused here, before any request, saying where to go instead.
        with pytest.raises(PermissionDenied, match="API key") as refused:
            await seam.list_prompts(token, tenant.project_id)
        assert refused.value.status == 403
    finally:
        await seam.aclose()


def test_evaluator_writer_without_proxy_use_cannot_define_an_llm_judge(
    client: TestClient,
) -> None:
    """An LLM judge spends the workspace's provider key on every event it scores: a key
    with ``evaluators:write`` but not ``proxy:use`` cannot create, re-version, deploy or
    re-enable one at the control plane (the data plane refuses the same when it runs it)."""
    t = make_tenant(client, "Judge")
    base = f"/v1/projects/{t.project_id}/evaluators"
    writer = project_key(client, t, ["evaluators:read", "evaluators:write"])
    spender = project_key(client, t, ["evaluators:read", "evaluators:write", "proxy:use"])
    judge = {"name": "helpful", "type": "llm", "criteria": "Is the answer helpful?"}
    assert error_code(client.post(base, json=judge, headers=auth(writer)), 403) == "forbidden"
    created = ok(client.post(base, json=judge, headers=auth(spender)), 201)
    one = f"{base}/{created['id']}"
    assert error_code(client.post(f"{one}/versions", json={"criteria": "Is it kind?"},
                                  headers=auth(writer)), 403) == "forbidden"
    assert error_code(client.post(f"{one}/deploy", json={"version": 1},
                                  headers=auth(writer)), 403) == "forbidden"
    # Switching a judge off never needs the permission; switching it back on does.
    assert ok(client.patch(one, json={"enabled": False}, headers=auth(writer)))[
        "enabled"] is False
    assert error_code(client.patch(one, json={"enabled": True}, headers=auth(writer)),
                      403) == "forbidden"
    # A Python metric spends no provider key: the writer defines one freely.
    ok(client.post(base, json={"name": "short", "type": "python",
                               "code": "def score(event):\n    return 1\n"},
                   headers=auth(writer)), 201)
