"""API key lifecycle, the token exchange, the token contract, the JWKS and key rotation."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import jwt
from fastapi.testclient import TestClient
from sqlalchemy import select

from apiary.control import ControlPlane
from apiary.control.dataplanes import register_data_plane
from apiary.control.db import ApiKey, SigningKey
from apiary.control.signing import RETIRE_MARGIN

from ._tenants import (
    add_member,
    auth,
    error_code,
    exchange,
    make_tenant,
    ok,
    verify,
)
from .conftest import DATA_PLANE_ID, ISSUER, FakeClock


def _no_time(client: TestClient, token: str) -> dict[str, Any]:
    """Verify signature, aud and iss while the fake clock runs ahead of the wall clock."""
    kid = jwt.get_unverified_header(token)["kid"]
    keys = {k["kid"]: k for k in ok(client.get("/.well-known/jwks.json"))["keys"]}
    claims: dict[str, Any] = jwt.decode(
        token, jwt.PyJWK(keys[kid], algorithm="ES256").key, algorithms=["ES256"],
        audience=DATA_PLANE_ID, issuer=ISSUER,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    return claims


def test_key_is_shown_once_and_only_its_hash_is_stored(
    client: TestClient, cp: ControlPlane
) -> None:
    t = make_tenant(client, "A")
    issued = ok(client.post(f"/v1/projects/{t.project_id}/keys", json={"name": "ingest"},
                            headers=auth(t.owner)), 201)
    value: str = issued["api_key"]
    prefix, key_id, secret = value[:9], value[9:33], value[34:]
    assert prefix == "hh_ingst_"
    assert value[33] == "_"
    assert len(secret) == 64
    assert secret.isalnum()
    assert issued["key"]["id"] == key_id
    assert issued["key"]["permissions"] == ["events:read", "events:write"]
    listed = ok(client.get(f"/v1/projects/{t.project_id}/keys", headers=auth(t.owner)))
    assert secret not in str(listed)
    with cp.transaction() as db:
        row = db.get(ApiKey, key_id)
        assert row is not None
        columns = [str(getattr(row, c.key)) for c in ApiKey.__table__.columns]
    assert not any(secret in c for c in columns)
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()


def test_revoked_key_stops_exchanging(client: TestClient) -> None:
    t = make_tenant(client, "A")
    issued = ok(client.post(f"/v1/projects/{t.project_id}/keys", json={"name": "k"},
                            headers=auth(t.owner)), 201)
    assert exchange(client, issued["api_key"]).status_code == 200
    revoked = ok(client.delete(f"/v1/projects/{t.project_id}/keys/{issued['key']['id']}",
                               headers=auth(t.owner)))
    assert revoked["revoked_at"] is not None
    assert error_code(exchange(client, issued["api_key"]), 401) == "unauthenticated"
    tampered = issued["api_key"][:-1] + ("A" if issued["api_key"][-1] != "A" else "B")
    assert error_code(exchange(client, tampered), 401) == "unauthenticated"


def test_last_used_is_written_at_most_once_per_resolution(
    client: TestClient, cp: ControlPlane, clock: FakeClock
) -> None:
    t = make_tenant(client, "A")
    issued = ok(client.post(f"/v1/projects/{t.project_id}/keys", json={"name": "k"},
                            headers=auth(t.owner)), 201)

    def last_used() -> Any:
        with cp.transaction() as db:
            row = db.get(ApiKey, issued["key"]["id"])
            assert row is not None
            return row.last_used_at

    assert last_used() is None
    first_use = clock.now
    ok(exchange(client, issued["api_key"]))
    assert last_used() == first_use
    clock.advance(30)
    ok(exchange(client, issued["api_key"]))
    assert last_used() == first_use  # within the resolution: not written
    clock.advance(31)
    ok(exchange(client, issued["api_key"]))
    assert last_used() == clock.now


def test_key_permissions_are_bounded(client: TestClient) -> None:
    t = make_tenant(client, "A")
    path = f"/v1/projects/{t.project_id}/keys"
    manage = client.post(path, json={"name": "k", "permissions": ["keys:manage"]},
                         headers=auth(t.owner))
    assert error_code(manage, 400) == "invalid_request"
    unknown = client.post(path, json={"name": "k", "permissions": ["events:delete"]},
                          headers=auth(t.owner))
    assert error_code(unknown, 400) == "invalid_request"
    # A project admin of a custom role without events:read cannot mint keys with it.
    ok(client.post(f"/v1/orgs/{t.org_id}/roles", headers=auth(t.owner), json={
        "name": "key-minter", "permissions": ["project:read", "keys:manage", "events:write"]}),
        201)
    minter = add_member(client, t, "m@a.example", "key-minter")
    escalate = client.post(path, json={"name": "k", "permissions": ["events:read"]},
                           headers=auth(minter))
    assert error_code(escalate, 403) == "forbidden"
    assert client.post(path, json={"name": "k", "permissions": ["events:write"]},
                       headers=auth(minter)).status_code == 201


def test_api_key_token_carries_exactly_the_contract_claims(
    client: TestClient, cp: ControlPlane
) -> None:
    t = make_tenant(client, "A")
    key = ok(client.post(f"/v1/projects/{t.project_id}/keys", headers=auth(t.owner),
                         json={"name": "k", "permissions": ["events:write"]}), 201)
    body = ok(exchange(client, key["api_key"]))
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "ES256"
    assert header["typ"] == "at+jwt"
    claims = verify(client, body["access_token"])
    assert header["kid"] in {k["kid"] for k in ok(client.get("/.well-known/jwks.json"))["keys"]}
    assert set(claims) == {"iss", "aud", "sub", "iat", "nbf", "exp", "jti", "org_id",
                           "workspace_id", "project_id", "role", "permissions",
                           "workspace_permissions"}
    assert claims["iss"] == ISSUER
    assert claims["aud"] == DATA_PLANE_ID
    assert claims["sub"] == f"key:{key['key']['id']}"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["nbf"] == claims["iat"]
    assert (claims["org_id"], claims["workspace_id"], claims["project_id"]) == (
        t.org_id, t.workspace_id, t.project_id)
    assert claims["role"] == "api_key"
    assert claims["permissions"] == ["events:write"]
    assert claims["workspace_permissions"] == []  # a project key holds nothing on the workspace
    second = verify(client, ok(exchange(client, key["api_key"]))["access_token"])
    assert second["jti"] != claims["jti"]


def test_workspace_key_token_has_no_project_unless_narrowed(client: TestClient) -> None:
    t = make_tenant(client, "A")
    key = ok(client.post(f"/v1/workspaces/{t.workspace_id}/keys", json={"name": "w"},
                         headers=auth(t.owner)), 201)["api_key"]
    claims = verify(client, ok(exchange(client, key))["access_token"])
    assert claims["project_id"] is None
    assert claims["workspace_id"] == t.workspace_id
    assert claims["workspace_permissions"] == claims["permissions"]
    narrowed = verify(client, ok(exchange(client, key, project_id=t.project_id))["access_token"])
    assert narrowed["project_id"] == t.project_id
    assert narrowed["workspace_permissions"] == claims["permissions"]


def test_user_session_token_carries_the_effective_role(client: TestClient) -> None:
    t = make_tenant(client, "A")
    viewer = add_member(client, t, "v@a.example", "viewer")
    claims = verify(client, ok(exchange(client, viewer, project_id=t.project_id))["access_token"])
    me = ok(client.get("/v1/me", headers=auth(viewer)))
    assert claims["sub"] == f"user:{me['user']['id']}"
    assert claims["role"] == "viewer"
    assert "events:read" in claims["permissions"]
    assert "events:write" not in claims["permissions"]
    assert claims["workspace_permissions"] == claims["permissions"]  # an org-level role
    missing = exchange(client, viewer)
    assert error_code(missing, 400) == "invalid_request"


def test_audience_must_be_a_registered_data_plane(client: TestClient, cp: ControlPlane) -> None:
    t = make_tenant(client, "A")
    b = make_tenant(client, "B")
    key = ok(client.post(f"/v1/projects/{t.project_id}/keys", json={"name": "k"},
                         headers=auth(t.owner)), 201)["api_key"]
    unknown = client.post("/v1/auth/token", json={"audience": "nowhere"}, headers=auth(key))
    assert error_code(unknown, 400) == "invalid_request"
    with cp.transaction() as db:
        register_data_plane(cp, db, dp_id="dp-b-only", name="B's own", url="https://b.example",
                            org_id=b.org_id)
    refused = client.post("/v1/auth/token", json={"audience": "dp-b-only"}, headers=auth(key))
    assert error_code(refused, 400) == "invalid_request"
    listed = [p["id"] for p in ok(client.get("/v1/data-planes", headers=auth(t.owner)))]
    assert listed == [DATA_PLANE_ID]
    assert "dp-b-only" in [p["id"] for p in ok(client.get("/v1/data-planes",
                                                          headers=auth(b.owner)))]


def test_token_endpoint_rejects_missing_and_bogus_credentials(client: TestClient) -> None:
    assert error_code(client.post("/v1/auth/token", json={"audience": DATA_PLANE_ID}),
                      401) == "unauthenticated"
    assert error_code(exchange(client, "hh_ingst_" + "a" * 24 + "_" + "b" * 64),
                      401) == "unauthenticated"
    assert error_code(exchange(client, "aps_not-a-session"), 401) == "unauthenticated"
    extra = client.post("/v1/auth/token", json={"audience": DATA_PLANE_ID, "scope": "all"},
                        headers=auth("x"))
    assert error_code(extra, 400) == "invalid_request"


def test_jwks_publishes_public_keys_only_with_cache_lifetime(
    client: TestClient, cp: ControlPlane
) -> None:
    t = make_tenant(client, "A")
    key = ok(client.post(f"/v1/projects/{t.project_id}/keys", json={"name": "k"},
                         headers=auth(t.owner)), 201)["api_key"]
    ok(exchange(client, key))  # creates the first signing key
    response = client.get("/.well-known/jwks.json")
    assert response.headers["cache-control"] == f"public, max-age={cp.settings.cp_jwks_cache_s}"
    (jwk,) = response.json()["keys"]
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    with cp.transaction() as db:
        stored = db.execute(select(SigningKey)).scalar_one()
    assert "PRIVATE KEY" not in stored.private_key_ciphertext
    assert stored.private_key_ciphertext.startswith("v1:")


def test_rotation_publishes_before_signing_and_retires_after_the_token_lifetime(
    client: TestClient, cp: ControlPlane, clock: FakeClock
) -> None:
    t = make_tenant(client, "A")
    key = ok(client.post(f"/v1/projects/{t.project_id}/keys", json={"name": "k"},
                         headers=auth(t.owner)), 201)["api_key"]

    def kids() -> list[str]:
        return [k["kid"] for k in ok(client.get("/.well-known/jwks.json"))["keys"]]

    def token() -> str:
        return str(ok(exchange(client, key))["access_token"])

    old_token = token()
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    assert kids() == [old_kid]

    with cp.transaction() as db:
        next_kid = cp.signing.rotate(db).kid
        assert error_code_of(lambda: cp.signing.rotate(db)) == "conflict"  # one at a time
    # Published at once, but not signing until it has been published for the cache lifetime.
    assert kids() == [old_kid, next_kid]
    clock.advance(cp.settings.cp_jwks_cache_s - 1)
    assert jwt.get_unverified_header(token())["kid"] == old_kid
    last_old_token = token()
    clock.advance(2)
    new_token = token()
    assert jwt.get_unverified_header(new_token)["kid"] == next_kid
    # The old key stays published while tokens it signed can still be valid.
    assert kids() == [next_kid, old_kid]
    assert _no_time(client, last_old_token)["sub"].startswith("key:")
    assert _no_time(client, new_token)["sub"].startswith("key:")
    clock.advance(cp.settings.cp_token_ttl_s + RETIRE_MARGIN.total_seconds() - 5)
    assert old_kid in kids()
    clock.advance(10)
    assert kids() == [next_kid]
    with cp.transaction() as db:
        states = {k["kid"]: (k["state"], k["published"]) for k in cp.signing.describe(db)}
    assert states == {old_kid: ("retired", False), next_kid: ("active", True)}


def test_retire_time_covers_every_token_of_the_old_key(
    client: TestClient, cp: ControlPlane, clock: FakeClock
) -> None:
    t = make_tenant(client, "A")
    key = ok(client.post(f"/v1/projects/{t.project_id}/keys", json={"name": "k"},
                         headers=auth(t.owner)), 201)["api_key"]
    ok(exchange(client, key))
    with cp.transaction() as db:
        cp.signing.rotate(db)
    clock.advance(cp.settings.cp_jwks_cache_s - 1)
    latest_old = _no_time(client, ok(exchange(client, key))["access_token"])
    clock.advance(1)
    ok(exchange(client, key))  # promotes
    with cp.transaction() as db:
        retired = db.execute(select(SigningKey).where(SigningKey.state == "retired")).scalar_one()
    assert retired.retire_after is not None
    assert retired.retire_after >= (
        clock.now.replace(microsecond=0) + timedelta(seconds=latest_old["exp"] - latest_old["iat"]))


def error_code_of(action: Any) -> str:
    from apiary.errors import ApiaryError

    try:
        action()
    except ApiaryError as exc:
        return exc.error_code
    raise AssertionError("no error raised")
