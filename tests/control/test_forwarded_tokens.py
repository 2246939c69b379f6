"""Tokens presented to the control plane: only control-plane tokens (``aud`` = the issuer)
are accepted, with the data plane's checks; a data-plane token is refused, saying why.

Before the security hardening the control plane accepted its data-plane tokens (a data
plane forwarded its caller's token to serve prompts and evaluators). Data planes now
forward only API keys (``apiary.dataplane.replica.control_plane``), and a token a data plane sees
can no longer act on the control plane.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from apiary.control import ControlPlane
from apiary.control.dataplanes import register_data_plane
from apiary.control.signing import ALGORITHM
from apiary.errors import InvalidRequest

from ._tenants import add_member, auth, error_code, exchange, make_tenant, ok, project_key, verify
from .conftest import DATA_PLANE_ID, ISSUER


def _prompt(client: TestClient, project_id: str, credential: str) -> Any:
    return client.post(f"/v1/projects/{project_id}/prompts", headers=auth(credential),
                       json={"name": f"p-{uuid.uuid4().hex[:6]}", "body": "Hi {{name}}"})


def _sign(cp: ControlPlane, **claims: Any) -> str:
    with cp.transaction() as db:
        key = cp.signing.current(db)
        private = cp.signing.private_key(key)
    now = int(time.time())
    body = {"iss": ISSUER, "aud": ISSUER, "sub": "key:forged", "iat": now, "nbf": now,
            "exp": now + 300, "jti": str(uuid.uuid4()), **claims}
    return jwt.encode(body, private, algorithm=ALGORITHM, headers={"kid": key.kid})


def _cp_token(client: TestClient, credential: str, **body: Any) -> str:
    answer = ok(client.post("/v1/auth/token", json={"audience": ISSUER, **body},
                            headers=auth(credential)))
    return str(answer["access_token"])


def test_a_key_control_plane_token_acts_as_its_key(client: TestClient) -> None:
    tenant = make_tenant(client, "Fwd")
    key = project_key(client, tenant, ["prompts:read", "prompts:write"])
    token = _cp_token(client, key)
    claims = verify(client, token, audience=ISSUER)
    assert claims["permissions"] == ["prompts:read", "prompts:write"]
    created = ok(_prompt(client, tenant.project_id, token), 201)
    assert created["versions"][0]["created_by"].startswith("key:")
    listed = ok(client.get(f"/v1/projects/{tenant.project_id}/prompts", headers=auth(token)))
    assert [p["id"] for p in listed] == [created["id"]]
    # Only the token's permissions: no evaluators, and never management.
    assert error_code(client.get(f"/v1/projects/{tenant.project_id}/evaluators",
                                 headers=auth(token)), 403) == "forbidden"
    assert error_code(client.get(f"/v1/projects/{tenant.project_id}/keys",
                                 headers=auth(token)), 401) == "reauthentication_required"
    # Only the token's tenant.
    other = make_tenant(client, "Other")
    assert error_code(client.get(f"/v1/projects/{other.project_id}/prompts",
                                 headers=auth(token)), 404) == "not_found"
    # A token is not exchanged for another token, for either audience.
    refused = exchange(client, token)
    assert error_code(refused, 401) == "unauthenticated"
    assert "another token" in refused.json()["message"]
    assert client.post("/v1/auth/token", json={"audience": ISSUER},
                       headers=auth(token)).status_code == 401


def test_a_data_plane_token_is_refused_saying_why(client: TestClient) -> None:
    tenant = make_tenant(client, "Dpt")
    key = project_key(client, tenant, ["prompts:read", "prompts:write"])
    token = ok(exchange(client, key))["access_token"]
    path = f"/v1/projects/{tenant.project_id}/prompts"
    refused = client.get(path, headers=auth(token))
    assert error_code(refused, 401) == "unauthenticated"
    assert "data plane" in refused.json()["message"]
    # The key itself (what a data plane forwards now) still works.
    ok(client.get(path, headers=auth(key)))


def test_a_user_control_plane_token_carries_the_users_role(client: TestClient) -> None:
    tenant = make_tenant(client, "Usr")
    viewer = add_member(client, tenant, "viewer@usr.example", "viewer",
                        project_id=tenant.project_id)
    token = _cp_token(client, viewer, project_id=tenant.project_id)
    ok(client.get(f"/v1/projects/{tenant.project_id}/prompts", headers=auth(token)))
    assert error_code(_prompt(client, tenant.project_id, token), 403) == "forbidden"
    # The owner's control-plane token holds everything but what needs a recent login.
    owner_token = _cp_token(client, tenant.owner, project_id=tenant.project_id)
    granted = set(verify(client, owner_token, audience=ISSUER)["permissions"])
    assert "project:manage" in granted
    assert not granted & {"keys:manage", "members:manage", "org:manage"}
    # A user's data-plane token is refused here.
    dp_token = ok(exchange(client, viewer, project_id=tenant.project_id))["access_token"]
    assert client.get(f"/v1/projects/{tenant.project_id}/prompts",
                      headers=auth(dp_token)).status_code == 401


def test_tokens_failing_any_check_are_refused(client: TestClient, cp: ControlPlane) -> None:
    tenant = make_tenant(client, "Bad")
    base = {"org_id": tenant.org_id, "workspace_id": tenant.workspace_id,
            "project_id": tenant.project_id, "permissions": ["prompts:read"]}
    path = f"/v1/projects/{tenant.project_id}/prompts"
    good = _sign(cp, **base)
    ok(client.get(path, headers=auth(good)))
    for token in (
        _sign(cp, **base, aud=DATA_PLANE_ID),
        _sign(cp, **base, aud="an-unregistered-dp"),
        _sign(cp, **base, aud=[ISSUER]),
        _sign(cp, **base, iss="https://someone-else.example"),
        _sign(cp, **base, exp=int(time.time()) - 3600),
        good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        jwt.encode({**base, "iss": ISSUER, "aud": ISSUER, "sub": "x", "exp": 2**31},
                   "a shared secret, long enough for HS256 keys", algorithm="HS256"),
    ):
        assert error_code(client.get(path, headers=auth(token)), 401) == "unauthenticated"
    # An unknown permission string grants nothing; a known one still works.
    odd = _sign(cp, **{**base, "permissions": ["prompts:read", "root:everything"]})
    ok(client.get(path, headers=auth(odd)))
    # A forged control-plane token claiming key management still cannot manage keys.
    forged = _sign(cp, **{**base, "permissions": ["keys:manage", "prompts:read"]})
    assert error_code(client.post(f"/v1/projects/{tenant.project_id}/keys",
                                  json={"name": "stolen"}, headers=auth(forged)),
                      401) == "reauthentication_required"


def test_no_data_plane_can_be_registered_as_the_issuer(cp: ControlPlane) -> None:
    # Its tokens would carry the control plane's audience.
    with cp.transaction() as db, pytest.raises(InvalidRequest, match="issuer"):
        register_data_plane(cp, db, dp_id=ISSUER, name="impostor", url="http://x.test")
