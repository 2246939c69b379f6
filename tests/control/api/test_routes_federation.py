"""The federation routes: creating data planes and bootstrap tokens, registration (and
the attacks on it), status, commands, project assignment, and the token exchange's
routing (``Apiary-Data-Plane``, 421 ``wrong_data_plane``)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import select

from apiary.control import ControlPlane, admin
from apiary.control.db import DataPlane, DataPlaneCommand

from .._tenants import (
    Tenant,
    auth,
    error_code,
    exchange,
    make_tenant,
    ok,
    project_key,
    verify,
)
from ..conftest import DATA_PLANE_ID, ISSUER, FakeClock
from ..federation._keys import (
    DataPlaneKey,
    create,
    create_and_register,
    installation_admin,
    register,
)
from ._cli import control_cli


@pytest.fixture
def root(client: TestClient) -> str:
    return installation_admin(client)


def _assign(client: TestClient, tenant: Tenant, dp_id: str | None) -> Any:
    return client.put(f"/v1/projects/{tenant.project_id}/data-plane",
                      json={"data_plane_id": dp_id}, headers=auth(tenant.owner))


def _exchange_as(client: TestClient, key: str, identity: str, **body: Any) -> Any:
    return client.post("/v1/auth/token", json=body,
                       headers={**auth(key), "Apiary-Data-Plane": identity})


# --- bootstrap and registration -------------------------------------------------------


def test_created_data_plane_registers_its_key_once(client: TestClient, cp: ControlPlane,
                                                   root: str) -> None:
    created = create(client, root, "eu-1", url="https://eu.example/")
    assert created["id"].startswith("dp-")
    assert created["bootstrap_token"].startswith("apiary_dpb_")
    assert created["url"] == "https://eu.example"
    with cp.transaction() as db:
        row = db.get(DataPlane, created["id"])
        assert row is not None
        assert row.status == "pending"
        # Only the token's hash is stored.
        assert created["bootstrap_token"] not in json.dumps(
            {c.name: str(getattr(row, c.name)) for c in DataPlane.__table__.columns})
    key = DataPlaneKey()
    body = ok(register(client, created["bootstrap_token"], key))
    assert body == {"data_plane_id": created["id"], "name": "eu-1", "issuer": ISSUER,
                    "jwks_url": f"{ISSUER}/.well-known/jwks.json",
                    "federation_endpoint": cp.settings.federation_endpoint_advertised,
                    "federation_tls": False,
                    "control_plane_version": body["control_plane_version"]}
    listed = {p["id"]: p for p in ok(client.get("/v1/data-planes", headers=auth(root)))}
    plane = listed[created["id"]]
    assert plane["status"] == "active"
    assert plane["federated"] is True
    assert plane["connected"] is False
    assert plane["version"] == "0.1.0"
    assert listed[DATA_PLANE_ID]["federated"] is False  # the legacy audience stays
    detail = ok(client.get(f"/v1/data-planes/{created['id']}", headers=auth(root)))
    assert detail["health_history"] == []
    assert detail["projects"] == []
    with cp.transaction() as db:
        row = db.get(DataPlane, created["id"])
        assert row is not None
        assert row.public_jwk == key.jwk
        assert row.key_thumbprint == key.kid


def test_reused_bootstrap_token_is_gone(client: TestClient, root: str) -> None:
    created = create(client, root)
    ok(register(client, created["bootstrap_token"]))
    again = register(client, created["bootstrap_token"])
    assert error_code(again, 410) == "gone"
    assert "already used" in again.json()["message"]
    assert "apiary data-planes create" in again.json()["message"]


def test_expired_bootstrap_token_is_gone(client: TestClient, clock: FakeClock,
                                         root: str) -> None:
    created = create(client, root, ttl_s=60)
    clock.advance(61)
    response = register(client, created["bootstrap_token"])
    assert error_code(response, 410) == "gone"
    assert "expired" in response.json()["message"]


@pytest.mark.parametrize("token", ["apiary_dpb_" + "A" * 43, "not-a-bootstrap-token", ""])
def test_unknown_bootstrap_token_is_refused(client: TestClient, root: str, token: str) -> None:
    create(client, root)
    assert error_code(register(client, token), 401) == "unauthenticated"


def _p384_jwk() -> dict[str, Any]:
    numbers = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
    def b64(v: int) -> str:
        return base64.urlsafe_b64encode(v.to_bytes(48, "big")).rstrip(b"=").decode()
    return {"kty": "EC", "crv": "P-384", "x": b64(numbers.x), "y": b64(numbers.y)}


def _private_jwk() -> dict[str, Any]:
    key = DataPlaneKey()
    d = key.private.private_numbers().private_value
    return {**key.jwk, "d": base64.urlsafe_b64encode(d.to_bytes(32, "big")).rstrip(b"=")
            .decode()}


@pytest.mark.parametrize("jwk", [
    pytest.param(_p384_jwk(), id="another-curve"),
    pytest.param(_private_jwk(), id="private-key"),
    pytest.param({**DataPlaneKey().jwk, "y": DataPlaneKey().jwk["x"]}, id="not-on-curve"),
    pytest.param({"kty": "RSA", "n": "AQAB", "e": "AQAB"}, id="rsa"),
    pytest.param({"kty": "EC", "crv": "P-256", "x": "garbage!", "y": "?"}, id="garbage"),
])
def test_a_jwk_that_is_not_a_p256_public_key_is_refused(client: TestClient, cp: ControlPlane,
                                                        root: str, jwk: dict[str, Any]) -> None:
    created = create(client, root)
    response = client.post("/v1/data-planes/register", json={
        "bootstrap_token": created["bootstrap_token"], "public_jwk": jwk})
    assert error_code(response, 400) == "invalid_request"
    assert response.json()["details"]["field"] == "public_jwk"
    # The token is not used up by a refused key.
    ok(register(client, created["bootstrap_token"]))


def test_non_admin_cannot_create_a_shared_data_plane(client: TestClient) -> None:
    tenant = make_tenant(client, "Acme")
    response = client.post("/v1/data-planes", json={"name": "x", "url": "https://x.example"},
                           headers=auth(tenant.owner))
    assert error_code(response, 403) == "forbidden"
    key = project_key(client, tenant)
    response = client.post("/v1/data-planes", json={"name": "x", "url": "https://x.example",
                                                    "org_id": tenant.org_id}, headers=auth(key))
    # A project key has no access to its org's node: it never manages data planes.
    assert error_code(response, 404) == "not_found"
    assert [p["id"] for p in ok(client.get("/v1/data-planes", headers=auth(tenant.owner)))
            ] == [DATA_PLANE_ID]


def test_creating_a_data_plane_needs_a_recent_login(client: TestClient, cp: ControlPlane,
                                                   clock: FakeClock, root: str) -> None:
    clock.advance(cp.settings.cp_recent_auth_s + 1)
    response = client.post("/v1/data-planes", json={"name": "x", "url": "https://x.example"},
                           headers=auth(root))
    assert error_code(response, 401) == "reauthentication_required"


def test_org_owner_creates_a_dedicated_data_plane_and_others_cannot_see_it(
        client: TestClient, root: str) -> None:
    a, b = make_tenant(client, "Acme"), make_tenant(client, "Bolt")
    dedicated = create_and_register(client, a.owner, "acme-dp", org_id=a.org_id)
    # B's owner can neither create one for A's org nor see, revoke or use A's.
    response = client.post("/v1/data-planes", json={"name": "x", "url": "https://x.example",
                                                    "org_id": a.org_id}, headers=auth(b.owner))
    assert error_code(response, 404) == "not_found"
    assert dedicated.id not in [p["id"] for p in ok(client.get("/v1/data-planes",
                                                               headers=auth(b.owner)))]
    assert dedicated.id in [p["id"] for p in ok(client.get("/v1/data-planes",
                                                           headers=auth(a.owner)))]
    assert error_code(client.get(f"/v1/data-planes/{dedicated.id}", headers=auth(b.owner)),
                      404) == "not_found"
    assert error_code(client.post(f"/v1/data-planes/{dedicated.id}/revoke",
                                  headers=auth(b.owner)), 404) == "not_found"
    assert error_code(_assign(client, b, dedicated.id), 400) == "invalid_request"
    # A's owner assigns A's project to it.
    project = ok(_assign(client, a, dedicated.id))
    assert project["data_plane_id"] == dedicated.id
    assert ok(client.get(f"/v1/projects/{a.project_id}",
                         headers=auth(a.owner)))["data_plane_id"] == dedicated.id


def test_cli_creates_a_data_plane_and_prints_its_token(client: TestClient,
                                                       cp: ControlPlane) -> None:
    tenant = make_tenant(client, "Acme")
    made = admin.data_planes_create(cp.settings, name="eu", url="https://eu.example",
                                    org_id=tenant.org_id, ttl_s=600)
    assert made["status"] == "pending"
    assert made["org_id"] == tenant.org_id
    body = ok(register(client, made["bootstrap_token"]))
    assert body["data_plane_id"] == made["id"]
    listed = {p["id"]: p for p in admin.data_planes_list(cp.settings)["data_planes"]}
    assert listed[made["id"]]["status"] == "active"


def test_cli_command_prints_the_token_once(client: TestClient, cp: ControlPlane,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    settings = cp.settings
    parser = control_cli(cp, monkeypatch)
    args = parser.parse_args(["data-planes", "create", "us-1", "--url", "https://us.example",
                              "--ttl-s", "600", "--data-dir", str(settings.data_dir), "--json"])
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["bootstrap_token"].startswith("apiary_dpb_")
    assert printed["status"] == "pending"
    assert ok(register(client, printed["bootstrap_token"]))["data_plane_id"] == printed["id"]


# --- commands ------------------------------------------------------------------------


def test_commands_are_queued_for_the_stream(client: TestClient, cp: ControlPlane,
                                            root: str) -> None:
    plane = create_and_register(client, root)
    drain = ok(client.post(f"/v1/data-planes/{plane.id}/drain", json={"enabled": True},
                           headers=auth(root)), 202)
    rotate = ok(client.post(f"/v1/data-planes/{plane.id}/rotate-key", headers=auth(root)), 202)
    assert (drain["kind"], rotate["kind"]) == ("drain", "rotate_key")
    revoked = ok(client.post(f"/v1/data-planes/{plane.id}/revoke", headers=auth(root)))
    assert revoked["status"] == "revoked"
    with cp.transaction() as db:
        kinds = [c.kind for c in db.scalars(select(DataPlaneCommand).where(
            DataPlaneCommand.data_plane_id == plane.id).order_by(DataPlaneCommand.created_at))]
    assert sorted(kinds) == ["drain", "revoke", "rotate_key"]
    # A revoked data plane takes no more commands and cannot be assigned.
    assert error_code(client.post(f"/v1/data-planes/{plane.id}/drain", json={"enabled": False},
                                  headers=auth(root)), 400) == "invalid_request"


# --- identity JWTs and the token exchange --------------------------------------------


@pytest.fixture
def routed(client: TestClient, root: str) -> tuple[Tenant, Any, Any, str]:
    """Project A assigned to data plane 1; data plane 2 registered too; A's key."""
    tenant = make_tenant(client, "Acme")
    one = create_and_register(client, root, "one", url="https://one.example")
    two = create_and_register(client, root, "two", url="https://two.example")
    ok(_assign(client, tenant, one.id))
    return tenant, one, two, project_key(client, tenant)


def test_the_audience_is_the_verified_data_plane(client: TestClient,
                                                 routed: tuple[Tenant, Any, Any, str]) -> None:
    tenant, one, _two, key = routed
    token = ok(_exchange_as(client, key, one.identity()))["access_token"]
    assert verify(client, token, audience=one.id)["project_id"] == tenant.project_id
    # Naming the audience explicitly is fine if it is its own id; another one is 400.
    ok(_exchange_as(client, key, one.identity(), audience=one.id))
    response = _exchange_as(client, key, one.identity(), audience=DATA_PLANE_ID)
    assert error_code(response, 400) == "invalid_request"


def test_a_key_on_the_wrong_data_plane_gets_421_naming_the_right_one(
        client: TestClient, routed: tuple[Tenant, Any, Any, str]) -> None:
    tenant, _one, two, key = routed
    response = _exchange_as(client, key, two.identity())
    assert error_code(response, 421) == "wrong_data_plane"
    body = response.json()
    assert body["data_plane_url"] == "https://one.example"
    assert f"project {tenant.project_id} is served by data plane one at " \
           "https://one.example" in body["message"]
    # The same through a legacy audience.
    response = exchange(client, key)
    assert error_code(response, 421) == "wrong_data_plane"
    assert response.json()["data_plane_url"] == "https://one.example"


def test_an_unassigned_project_is_not_served_by_a_federated_data_plane(
        client: TestClient, root: str) -> None:
    tenant = make_tenant(client, "Acme")
    plane = create_and_register(client, root)
    key = project_key(client, tenant)
    response = _exchange_as(client, key, plane.identity())
    assert error_code(response, 421) == "wrong_data_plane"
    assert "not assigned to this data plane" in response.json()["message"]
    ok(exchange(client, key))  # the legacy data plane still serves it


def test_a_revoked_data_plane_gets_no_tokens(client: TestClient, root: str,
                                             routed: tuple[Tenant, Any, Any, str]) -> None:
    _tenant, one, _two, key = routed
    ok(client.post(f"/v1/data-planes/{one.id}/revoke", headers=auth(root)))
    assert error_code(_exchange_as(client, key, one.identity()), 401) == "unauthenticated"
    # Nor through its id as a bare audience.
    assert error_code(exchange(client, key, audience=one.id), 401) == "unauthenticated"


def _forged(routed: tuple[Tenant, Any, Any, str], how: str) -> str:
    _tenant, one, _two, _key = routed
    now = int(time.time())
    claims = {"iss": one.id, "sub": one.id, "aud": ISSUER, "iat": now, "exp": now + 60,
              "jti": "x"}
    if how == "unregistered-key":  # a key the control plane never registered, same iss
        return DataPlaneKey().identity(one.id)
    if how == "unregistered-key-registered-kid":
        return DataPlaneKey().identity(one.id, kid=one.key.kid)
    if how == "alg-none":
        return jwt.encode(claims, None, algorithm="none", headers={"kid": one.key.kid})
    if how == "hs256-public-key-secret":
        secret = json.dumps(one.key.jwk).encode()
        header = base64.urlsafe_b64encode(json.dumps(
            {"alg": "HS256", "typ": "JWT", "kid": one.key.kid}).encode()).rstrip(b"=")
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
        import hashlib
        import hmac
        signature = base64.urlsafe_b64encode(hmac.new(
            secret, header + b"." + payload, hashlib.sha256).digest()).rstrip(b"=")
        return (header + b"." + payload + b"." + signature).decode()
    if how == "exp-too-far":
        return one.identity(lifetime_s=3600)
    if how == "expired":
        return one.key.identity(one.id, iat=now - 600, exp=now - 300)
    if how == "wrong-audience":
        return one.identity(audience="https://another-cp.example/cp")
    if how == "sub-differs":
        return one.key.identity(one.id, sub="dp-0000000000000000")
    if how == "garbage":
        return "garbage.garbage.garbage"
    raise AssertionError(how)


@pytest.mark.parametrize("how", [
    "unregistered-key", "unregistered-key-registered-kid", "alg-none",
    "hs256-public-key-secret", "exp-too-far", "expired", "wrong-audience", "sub-differs",
    "garbage",
])
def test_forged_identities_are_refused(client: TestClient,
                                       routed: tuple[Tenant, Any, Any, str], how: str) -> None:
    key = routed[3]
    response = _exchange_as(client, key, _forged(routed, how))
    assert error_code(response, 401) == "unauthenticated", how


def test_a_replayed_identity_jwt_is_refused_on_a_second_exchange(
        client: TestClient, routed: tuple[Tenant, Any, Any, str]) -> None:
    """A stolen identity JWT (same jti) is not a key for its 5-minute lifetime: the
    control plane accepts each jti once."""
    _tenant, one, _two, key = routed
    identity = one.identity()
    ok(_exchange_as(client, key, identity))
    response = _exchange_as(client, key, identity)
    assert error_code(response, 401) == "unauthenticated"
    assert "already used" in response.json()["message"]
    ok(_exchange_as(client, key, one.identity()))  # a fresh one is fine


def test_a_shared_data_planes_status_does_not_list_other_orgs_projects(
        client: TestClient, root: str) -> None:
    """GET /v1/data-planes[/{id}] on a shared data plane named every tenant's project."""
    a, b = make_tenant(client, "Acme"), make_tenant(client, "Bolt")
    shared = create_and_register(client, root, "shared")
    for t in (a, b):
        ok(_assign(client, t, shared.id))
    for path in ("/v1/data-planes", f"/v1/data-planes/{shared.id}"):
        body = ok(client.get(path, headers=auth(b.owner)))
        seen = body if isinstance(body, list) else [body]
        mine = [p for p in seen if p["id"] == shared.id]
        assert [p["projects"] for p in mine] == [[b.project_id]], path
    detail = ok(client.get(f"/v1/data-planes/{shared.id}", headers=auth(root)))
    assert sorted(detail["projects"]) == sorted([a.project_id, b.project_id])


def test_a_deleted_orgs_dedicated_data_plane_is_refused_its_bootstrap_and_identity(
        client: TestClient, cp: ControlPlane, root: str) -> None:
    """The data-plane row goes with its org (ON DELETE CASCADE): its unused bootstrap
    token and its registered identity are unknown afterwards, never a shared data plane."""
    from apiary.control.db import Organization

    gone, other = make_tenant(client, "Gone"), make_tenant(client, "Other")
    registered = create_and_register(client, root, "gone-dp", org_id=gone.org_id)
    pending = create(client, root, "gone-pending", org_id=gone.org_id)
    key = project_key(client, other)
    with cp.transaction() as db:
        org = db.get(Organization, gone.org_id)
        assert org is not None
        db.delete(org)
    with cp.transaction() as db:
        assert db.get(DataPlane, registered.id) is None
    assert error_code(register(client, pending["bootstrap_token"]), 401) == "unauthenticated"
    response = _exchange_as(client, key, registered.identity())
    assert error_code(response, 401) == "unauthenticated"


def test_an_org_dedicated_data_plane_gets_no_token_for_another_orgs_keys(
        client: TestClient, root: str) -> None:
    """Acme's dedicated data plane presenting Bolt's project key or workspace key (one
    not narrowed to a project, so not routed by assignment) is refused."""
    a, b = make_tenant(client, "Acme"), make_tenant(client, "Bolt")
    dedicated = create_and_register(client, a.owner, "acme-dp", org_id=a.org_id)
    ok(_assign(client, a, dedicated.id))
    workspace_key = ok(client.post(f"/v1/workspaces/{b.workspace_id}/keys",
                                   json={"name": "ws"}, headers=auth(b.owner)), 201)["api_key"]
    for key in (project_key(client, b), workspace_key):
        response = _exchange_as(client, key, dedicated.identity())
        assert error_code(response, 400) == "invalid_request"
        assert "not a data plane registered for this organization" in response.json()[
            "message"]


def test_bootstrap_token_guessing_is_throttled_per_address(client: TestClient,
                                                           cp: ControlPlane) -> None:
    """Guessing at /v1/data-planes/register spends the address's per-minute budget (the
    tokens are 32 random bytes and looked up by SHA-256: the budget is defence in depth)."""
    per_min = cp.settings.cp_auth_ip_per_min
    statuses = [register(client, f"apiary_dpb_guess{i}").status_code
                for i in range(per_min + 1)]
    assert set(statuses[:per_min]) == {401}
    assert statuses[per_min] == 429
