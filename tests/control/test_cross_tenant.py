"""Tenant isolation: the owner of organization B, and B's keys, can neither see nor change
anything of organization A — one test per endpoint family. Every attempt answers 404 (not
403: B must not even learn that A's things exist), and A's data is unchanged after."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from apiary.control.permissions import KEY_GRANTABLE, sorted_values

from ._tenants import Tenant, auth, exchange, make_tenant, ok, project_key

Call = tuple[str, str, dict[str, Any] | None]


@pytest.fixture
def tenants(client: TestClient) -> tuple[Tenant, Tenant]:
    return make_tenant(client, "A"), make_tenant(client, "B")


def _all_404(client: TestClient, credential: str, calls: list[Call]) -> None:
    for method, path, body in calls:
        response = client.request(method, path, json=body, headers=auth(credential))
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["errorCode"] == "not_found"


def _b_key(client: TestClient, b: Tenant) -> str:
    return project_key(client, b, sorted_values(KEY_GRANTABLE))


def test_tenancy_endpoints(client: TestClient, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    calls: list[Call] = [
        ("GET", f"/v1/orgs/{a.org_id}", None),
        ("PATCH", f"/v1/orgs/{a.org_id}", {"name": "pwned"}),
        ("GET", f"/v1/orgs/{a.org_id}/workspaces", None),
        ("POST", f"/v1/orgs/{a.org_id}/workspaces", {"name": "pwned"}),
        ("GET", f"/v1/workspaces/{a.workspace_id}", None),
        ("PATCH", f"/v1/workspaces/{a.workspace_id}", {"name": "pwned"}),
        ("GET", f"/v1/workspaces/{a.workspace_id}/projects", None),
        ("POST", f"/v1/workspaces/{a.workspace_id}/projects", {"name": "pwned"}),
        ("GET", f"/v1/projects/{a.project_id}", None),
        ("PATCH", f"/v1/projects/{a.project_id}", {"name": "pwned"}),
    ]
    _all_404(client, b.owner, calls)
    _all_404(client, _b_key(client, b), calls)
    assert [o["id"] for o in ok(client.get("/v1/orgs", headers=auth(b.owner)))] == [b.org_id]
    assert ok(client.get(f"/v1/orgs/{a.org_id}", headers=auth(a.owner)))["name"] == "Org A"
    assert [p["name"] for p in ok(client.get(f"/v1/workspaces/{a.workspace_id}/projects",
                                             headers=auth(a.owner)))] == ["app"]


def test_member_and_role_endpoints(client: TestClient, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    a_members = ok(client.get(f"/v1/orgs/{a.org_id}/memberships", headers=auth(a.owner)))
    invitation = ok(client.post(f"/v1/orgs/{a.org_id}/invitations", headers=auth(a.owner),
                                json={"email": "x@a.example", "role": "viewer"}), 201)
    role = ok(client.post(f"/v1/orgs/{a.org_id}/roles", headers=auth(a.owner),
                          json={"name": "reader", "permissions": ["project:read"]}), 201)
    b_user = ok(client.get("/v1/me", headers=auth(b.owner)))["user"]["id"]
    membership = a_members[0]["id"]
    calls: list[Call] = [
        ("GET", f"/v1/orgs/{a.org_id}/memberships", None),
        ("POST", f"/v1/orgs/{a.org_id}/memberships", {"user_id": b_user, "role": "owner"}),
        ("PATCH", f"/v1/orgs/{a.org_id}/memberships/{membership}", {"role": "viewer"}),
        ("DELETE", f"/v1/orgs/{a.org_id}/memberships/{membership}", None),
        ("GET", f"/v1/orgs/{a.org_id}/invitations", None),
        ("POST", f"/v1/orgs/{a.org_id}/invitations", {"email": "b@b.example", "role": "owner"}),
        ("DELETE", f"/v1/orgs/{a.org_id}/invitations/{invitation['invitation']['id']}", None),
        ("GET", f"/v1/orgs/{a.org_id}/roles", None),
        ("POST", f"/v1/orgs/{a.org_id}/roles", {"name": "evil", "permissions": []}),
        ("PATCH", f"/v1/orgs/{a.org_id}/roles/{role['id']}", {"permissions": []}),
        ("DELETE", f"/v1/orgs/{a.org_id}/roles/{role['id']}", None),
        # B's own org path with A's membership id: the id is not found in B either.
        ("PATCH", f"/v1/orgs/{b.org_id}/memberships/{membership}", {"role": "viewer"}),
        ("DELETE", f"/v1/orgs/{b.org_id}/roles/{role['id']}", None),
    ]
    _all_404(client, b.owner, calls)
    _all_404(client, _b_key(client, b), calls)
    assert ok(client.get(f"/v1/orgs/{a.org_id}/memberships", headers=auth(a.owner))) == a_members
    assert ok(client.get(f"/v1/orgs/{a.org_id}/invitations",
                         headers=auth(a.owner)))[0]["revoked_at"] is None


def test_key_endpoints(client: TestClient, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    a_key = ok(client.post(f"/v1/projects/{a.project_id}/keys", json={"name": "a"},
                           headers=auth(a.owner)), 201)
    ws_key = ok(client.post(f"/v1/workspaces/{a.workspace_id}/keys", json={"name": "a"},
                            headers=auth(a.owner)), 201)
    calls: list[Call] = [
        ("GET", f"/v1/projects/{a.project_id}/keys", None),
        ("POST", f"/v1/projects/{a.project_id}/keys", {"name": "b"}),
        ("DELETE", f"/v1/projects/{a.project_id}/keys/{a_key['key']['id']}", None),
        ("GET", f"/v1/workspaces/{a.workspace_id}/keys", None),
        ("POST", f"/v1/workspaces/{a.workspace_id}/keys", {"name": "b"}),
        ("DELETE", f"/v1/workspaces/{a.workspace_id}/keys/{ws_key['key']['id']}", None),
        # A's key ids under B's own project and workspace.
        ("DELETE", f"/v1/projects/{b.project_id}/keys/{a_key['key']['id']}", None),
        ("DELETE", f"/v1/workspaces/{b.workspace_id}/keys/{ws_key['key']['id']}", None),
    ]
    _all_404(client, b.owner, calls)
    keys = ok(client.get(f"/v1/projects/{a.project_id}/keys", headers=auth(a.owner)))
    assert [(k["id"], k["revoked_at"]) for k in keys] == [(a_key["key"]["id"], None)]
    assert exchange(client, a_key["api_key"]).status_code == 200


def test_prompt_endpoints(client: TestClient, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    base = f"/v1/projects/{a.project_id}/prompts"
    template = ok(client.post(base, json={"name": "p", "body": "v1"}, headers=auth(a.owner)),
                  201)
    one = f"{base}/{template['id']}"
    calls: list[Call] = [
        ("GET", base, None),
        ("POST", base, {"name": "q", "body": "x"}),
        ("GET", one, None),
        ("POST", f"{one}/versions", {"body": "evil"}),
        ("GET", f"{one}/versions/1", None),
        ("PUT", f"{one}/environments/prod", {"version": 1}),
        ("GET", f"{one}/environments/prod", None),
        ("PUT", f"{one}/tags", {"tags": ["x"]}),
        ("GET", f"/v1/projects/{b.project_id}/prompts/{template['id']}", None),
        ("POST", f"/v1/projects/{b.project_id}/prompts/{template['id']}/versions",
         {"body": "evil"}),
    ]
    _all_404(client, b.owner, calls)
    _all_404(client, _b_key(client, b), calls)
    after = ok(client.get(one, headers=auth(a.owner)))
    assert [v["body"] for v in after["versions"]] == ["v1"]
    assert after["environments"] == {}
    assert after["tags"] == []


def test_evaluator_endpoints(client: TestClient, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    base = f"/v1/projects/{a.project_id}/evaluators"
    evaluator = ok(client.post(base, headers=auth(a.owner), json={
        "name": "len", "type": "python", "code": "def metric(e): return 1"}), 201)
    one = f"{base}/{evaluator['id']}"
    calls: list[Call] = [
        ("GET", base, None),
        ("POST", base, {"name": "x", "type": "llm", "criteria": "c"}),
        ("GET", one, None),
        ("PATCH", one, {"enabled": False}),
        ("POST", f"{one}/versions", {"code": "evil"}),
        ("POST", f"{one}/deploy", {"version": 1}),
        ("PATCH", f"/v1/projects/{b.project_id}/evaluators/{evaluator['id']}",
         {"enabled": False}),
    ]
    _all_404(client, b.owner, calls)
    _all_404(client, _b_key(client, b), calls)
    after = ok(client.get(one, headers=auth(a.owner)))
    assert after["enabled"] is True
    assert after["deployed_version"] is None
    assert len(after["versions"]) == 1


def test_alert_endpoints(client: TestClient, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    base = f"/v1/projects/{a.project_id}/alerts"
    condition = {"type": "aggregate", "field": "event_count", "window_s": 600,
                 "warning": {"op": ">", "value": 5}}
    alert = ok(client.post(base, json={"name": "errs", "condition": condition},
                           headers=auth(a.owner)), 201)
    one = f"{base}/{alert['id']}"
    calls: list[Call] = [
        ("GET", base, None),
        ("POST", base, {"name": "x", "condition": condition}),
        ("GET", one, None),
        ("PATCH", one, {"description": "x"}),
        ("POST", f"{one}/pause", None),
        ("POST", f"{one}/mute", None),
        ("DELETE", one, None),
        ("DELETE", f"/v1/projects/{b.project_id}/alerts/{alert['id']}", None),
    ]
    _all_404(client, b.owner, calls)
    _all_404(client, _b_key(client, b), calls)
    assert ok(client.get(one, headers=auth(a.owner)))["state"] == "active"


def test_sso_provider_endpoints(client: TestClient, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    base = f"/v1/orgs/{a.org_id}/sso/oidc"
    provider = ok(client.post(base, headers=auth(a.owner), json={
        "name": "idp", "issuer": "https://idp.a.example", "client_id": "c",
        "client_secret": "s"}), 201)
    calls: list[Call] = [
        ("GET", base, None),
        ("POST", base, {"name": "evil", "issuer": "https://evil.example", "client_id": "c"}),
        ("PATCH", f"{base}/{provider['id']}", {"enabled": False}),
        ("DELETE", f"{base}/{provider['id']}", None),
        ("DELETE", f"/v1/orgs/{b.org_id}/sso/oidc/{provider['id']}", None),
    ]
    _all_404(client, b.owner, calls)
    listed = ok(client.get(base, headers=auth(a.owner)))
    assert [(p["id"], p["enabled"]) for p in listed] == [(provider["id"], True)]
    assert "client_secret" not in listed[0]


def test_token_exchange(client: TestClient, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    # A user of B cannot get a token for A's project.
    denied = exchange(client, b.owner, project_id=a.project_id)
    assert denied.status_code == 404
    # B's project key cannot be narrowed to A's project; B's workspace key neither.
    assert exchange(client, _b_key(client, b), project_id=a.project_id).status_code == 404
    ws_key = ok(client.post(f"/v1/workspaces/{b.workspace_id}/keys", json={"name": "w"},
                            headers=auth(b.owner)), 201)["api_key"]
    assert exchange(client, ws_key, project_id=a.project_id).status_code == 404
    # What B gets is B's tenant, and only B's.
    claims = ok(exchange(client, ws_key, project_id=b.project_id))
    assert claims["token_type"] == "Bearer"
