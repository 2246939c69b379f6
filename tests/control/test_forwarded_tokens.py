"""The control plane accepts its own access tokens (forwarded by a data plane serving
prompt templates and evaluators) with the data plane's checks, and nothing else."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from fastapi.testclient import TestClient

from apiary.control import ControlPlane
from apiary.control.signing import ALGORITHM

from ._helpers import add_member, auth, error_code, exchange, make_tenant, ok, project_key
from .conftest import DATA_PLANE_ID, ISSUER


def _prompt(client: TestClient, project_id: str, credential: str) -> Any:
    return client.post(f"/v1/projects/{project_id}/prompts", headers=auth(credential),
                       json={"name": f"p-{uuid.uuid4().hex[:6]}", "body": "Hi {{name}}"})


def _sign(cp: ControlPlane, **claims: Any) -> str:
    with cp.transaction() as db:
        key = cp.signing.current(db)
        private = cp.signing.private_key(key)
    now = int(time.time())
    body = {"iss": ISSUER, "aud": DATA_PLANE_ID, "sub": "key:forged", "iat": now, "nbf": now,
            "exp": now + 300, "jti": str(uuid.uuid4()), **claims}
    return jwt.encode(body, private, algorithm=ALGORITHM, headers={"kid": key.kid})


def test_a_key_token_acts_as_its_key(client: TestClient) -> None:
    tenant = make_tenant(client, "Fwd")
    key = project_key(client, tenant, ["prompts:read", "prompts:write"])
    token = ok(exchange(client, key))["access_token"]
    created = ok(_prompt(client, tenant.project_id, token), 201)
    assert created["versions"][0]["created_by"].startswith("key:")
    listed = ok(client.get(f"/v1/projects/{tenant.project_id}/prompts", headers=auth(token)))
    assert [p["id"] for p in listed] == [created["id"]]
    # Only the token's permissions: no evaluators, and never management.
    assert error_code(client.get(f"/v1/projects/{tenant.project_id}/evaluators",
                                 headers=auth(token)), 403) == "forbidden"
    assert error_code(client.get(f"/v1/projects/{tenant.project_id}/keys",
                                 headers=auth(token)), 403) == "forbidden"
    # Only the token's tenant.
    other = make_tenant(client, "Other")
    assert error_code(client.get(f"/v1/projects/{other.project_id}/prompts",
                                 headers=auth(token)), 404) == "not_found"
    # A token is not exchanged for another token.
    assert exchange(client, token).status_code == 401


def test_a_user_token_carries_the_users_role(client: TestClient) -> None:
    tenant = make_tenant(client, "Usr")
    viewer = add_member(client, tenant, "viewer@usr.example", "viewer",
                        project_id=tenant.project_id)
    token = ok(exchange(client, viewer, project_id=tenant.project_id))["access_token"]
    ok(client.get(f"/v1/projects/{tenant.project_id}/prompts", headers=auth(token)))
    assert error_code(_prompt(client, tenant.project_id, token), 403) == "forbidden"


def test_tokens_failing_any_check_are_refused(client: TestClient, cp: ControlPlane) -> None:
    tenant = make_tenant(client, "Bad")
    base = {"org_id": tenant.org_id, "workspace_id": tenant.workspace_id,
            "project_id": tenant.project_id, "permissions": ["prompts:read"]}
    path = f"/v1/projects/{tenant.project_id}/prompts"
    good = _sign(cp, **base)
    ok(client.get(path, headers=auth(good)))
    for token in (
        _sign(cp, **base, aud="an-unregistered-dp"),
        _sign(cp, **base, iss="https://someone-else.example"),
        _sign(cp, **base, exp=int(time.time()) - 3600),
        good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        jwt.encode({**base, "iss": ISSUER, "aud": DATA_PLANE_ID, "sub": "x", "exp": 2**31},
                   "a shared secret, long enough for HS256 keys", algorithm="HS256"),
    ):
        assert error_code(client.get(path, headers=auth(token)), 401) == "unauthenticated"
    # An unknown permission string grants nothing; a known one still works.
    odd = _sign(cp, **{**base, "permissions": ["prompts:read", "root:everything"]})
    ok(client.get(path, headers=auth(odd)))
