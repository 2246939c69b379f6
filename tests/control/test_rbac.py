"""Roles: what viewers, members, admins and owners may do; custom roles; inheritance from
the organization down to projects; invitations; the last owner; no escalation."""

from __future__ import annotations

from fastapi.testclient import TestClient

from apiary.control import ControlPlane

from ._tenants import (
    Tenant,
    add_member,
    auth,
    error_code,
    make_tenant,
    ok,
    signup,
    user_id,
)
from .conftest import FakeClock

PROMPT = {"name": "greeting", "body": "Hello {{name}}"}


def _prompts(t: Tenant) -> str:
    return f"/v1/projects/{t.project_id}/prompts"


def test_viewer_reads_but_cannot_write(client: TestClient) -> None:
    t = make_tenant(client, "A")
    ok(client.post(_prompts(t), json=PROMPT, headers=auth(t.owner)), 201)
    viewer = add_member(client, t, "viewer@a.example", "viewer")
    assert len(ok(client.get(_prompts(t), headers=auth(viewer)))) == 1
    denied = client.post(_prompts(t), json={**PROMPT, "name": "other"}, headers=auth(viewer))
    assert error_code(denied, 403) == "forbidden"
    alert = {"name": "slow", "condition": {"type": "aggregate", "field": "latency_p95",
                                           "window_s": 300, "warning": {"op": ">", "value": 2.0}}}
    assert client.post(f"/v1/projects/{t.project_id}/alerts", json=alert,
                       headers=auth(viewer)).status_code == 403
    assert client.post(f"/v1/projects/{t.project_id}/keys", json={"name": "k"},
                       headers=auth(viewer)).status_code == 403


def test_member_writes_config_but_admin_manages(client: TestClient) -> None:
    t = make_tenant(client, "A")
    member = add_member(client, t, "member@a.example", "member")
    admin = add_member(client, t, "admin@a.example", "admin")
    ok(client.post(_prompts(t), json=PROMPT, headers=auth(member)), 201)
    for token, allowed in ((member, False), (admin, True)):
        key = client.post(f"/v1/projects/{t.project_id}/keys", json={"name": "k"},
                          headers=auth(token))
        project = client.post(f"/v1/workspaces/{t.workspace_id}/projects",
                              json={"name": f"p-{allowed}"}, headers=auth(token))
        invite = client.post(f"/v1/orgs/{t.org_id}/invitations",
                             json={"email": f"x{allowed}@a.example", "role": "viewer"},
                             headers=auth(token))
        assert [key.status_code, project.status_code, invite.status_code] == (
            [201, 201, 201] if allowed else [403, 403, 403])
    # Organization settings are the owner's.
    assert client.patch(f"/v1/orgs/{t.org_id}", json={"name": "x"},
                        headers=auth(admin)).status_code == 403
    assert ok(client.patch(f"/v1/orgs/{t.org_id}", json={"name": "Renamed"},
                           headers=auth(t.owner)))["name"] == "Renamed"


def test_org_role_is_inherited_and_overridden_below(client: TestClient) -> None:
    t = make_tenant(client, "A")
    member = add_member(client, t, "member@a.example", "member")
    second = ok(client.post(f"/v1/workspaces/{t.workspace_id}/projects",
                            json={"name": "second"}, headers=auth(t.owner)), 201)
    # Inherited from the org: member writes in every project.
    assert client.post(_prompts(t), json=PROMPT, headers=auth(member)).status_code == 201
    # A project-level override to viewer takes precedence there, and only there.
    memberships = ok(client.get(f"/v1/orgs/{t.org_id}/memberships", headers=auth(t.owner)))
    member_id = next(m["user_id"] for m in memberships if m["role"] == "member")
    ok(client.post(f"/v1/orgs/{t.org_id}/memberships", headers=auth(t.owner), json={
        "user_id": member_id, "role": "viewer", "project_id": second["id"]}), 201)
    denied = client.post(f"/v1/projects/{second['id']}/prompts", json=PROMPT,
                         headers=auth(member))
    assert error_code(denied, 403) == "forbidden"
    assert client.get(f"/v1/projects/{second['id']}/prompts",
                      headers=auth(member)).status_code == 200
    # Upward override too: project admin while only a viewer of the org.
    viewer = add_member(client, t, "viewer@a.example", "viewer")
    viewer_id = user_id(client, viewer)
    ok(client.post(f"/v1/orgs/{t.org_id}/memberships", headers=auth(t.owner), json={
        "user_id": viewer_id, "role": "admin", "project_id": t.project_id}), 201)
    assert client.post(f"/v1/projects/{t.project_id}/keys", json={"name": "k"},
                       headers=auth(viewer)).status_code == 201
    assert client.post(f"/v1/projects/{second['id']}/keys", json={"name": "k"},
                       headers=auth(viewer)).status_code == 403


def test_owner_is_never_overridden_downwards(client: TestClient) -> None:
    t = make_tenant(client, "A")
    owner_id = user_id(client, t.owner)
    ok(client.post(f"/v1/orgs/{t.org_id}/memberships", headers=auth(t.owner), json={
        "user_id": owner_id, "role": "viewer", "project_id": t.project_id}), 201)
    assert client.post(f"/v1/projects/{t.project_id}/keys", json={"name": "k"},
                       headers=auth(t.owner)).status_code == 201


def test_project_only_member_sees_nothing_else(client: TestClient) -> None:
    t = make_tenant(client, "A")
    guest = add_member(client, t, "guest@a.example", "member", project_id=t.project_id)
    assert client.get(f"/v1/projects/{t.project_id}", headers=auth(guest)).status_code == 200
    assert error_code(client.get(f"/v1/orgs/{t.org_id}", headers=auth(guest)), 404) == (
        "not_found")
    assert client.get(f"/v1/workspaces/{t.workspace_id}",
                      headers=auth(guest)).status_code == 404
    me = ok(client.get("/v1/me", headers=auth(guest)))
    assert [(m["project_id"], m["role"], m["scope_name"]) for m in me["memberships"]] == [
        (t.project_id, "member", "app")]


def test_custom_roles_grant_exactly_their_permissions(client: TestClient) -> None:
    t = make_tenant(client, "A")
    role = ok(client.post(f"/v1/orgs/{t.org_id}/roles", headers=auth(t.owner), json={
        "name": "prompt-editor",
        "permissions": ["project:read", "prompts:read", "prompts:write"]}), 201)
    assert role["builtin"] is False
    editor = add_member(client, t, "editor@a.example", "prompt-editor")
    assert client.post(_prompts(t), json=PROMPT, headers=auth(editor)).status_code == 201
    assert client.get(f"/v1/projects/{t.project_id}/alerts",
                      headers=auth(editor)).status_code == 403
    names = [r["name"] for r in ok(client.get(f"/v1/orgs/{t.org_id}/roles",
                                              headers=auth(t.owner)))]
    assert names == ["admin", "member", "owner", "viewer", "prompt-editor"]
    bad = client.post(f"/v1/orgs/{t.org_id}/roles", headers=auth(t.owner),
                      json={"name": "x", "permissions": ["prompts:fly"]})
    assert error_code(bad, 400) == "invalid_request"
    clash = client.post(f"/v1/orgs/{t.org_id}/roles", headers=auth(t.owner),
                        json={"name": "admin", "permissions": []})
    assert error_code(clash, 400) == "invalid_request"
    in_use = client.delete(f"/v1/orgs/{t.org_id}/roles/{role['id']}", headers=auth(t.owner))
    assert error_code(in_use, 409) == "conflict"
    # Narrowing the role takes effect on the next request.
    ok(client.patch(f"/v1/orgs/{t.org_id}/roles/{role['id']}", headers=auth(t.owner),
                    json={"permissions": ["project:read", "prompts:read"]}))
    assert client.post(_prompts(t), json={**PROMPT, "name": "again"},
                       headers=auth(editor)).status_code == 403


def test_nobody_grants_more_than_they_have(client: TestClient) -> None:
    t = make_tenant(client, "A")
    admin = add_member(client, t, "admin@a.example", "admin")
    as_owner = client.post(f"/v1/orgs/{t.org_id}/invitations", headers=auth(admin),
                           json={"email": "boss@a.example", "role": "owner"})
    assert error_code(as_owner, 403) == "forbidden"
    owner_membership = next(
        m for m in ok(client.get(f"/v1/orgs/{t.org_id}/memberships", headers=auth(admin)))
        if m["role"] == "owner")
    demote = client.patch(f"/v1/orgs/{t.org_id}/memberships/{owner_membership['id']}",
                          headers=auth(admin), json={"role": "viewer"})
    assert error_code(demote, 403) == "forbidden"
    # A project admin manages that project's members only.
    project_admin = add_member(client, t, "padmin@a.example", "admin", project_id=t.project_id)
    assert client.post(f"/v1/orgs/{t.org_id}/invitations", headers=auth(project_admin),
                       json={"email": "y@a.example", "role": "viewer"}).status_code == 404
    assert client.post(f"/v1/orgs/{t.org_id}/invitations", headers=auth(project_admin), json={
        "email": "y@a.example", "role": "viewer", "project_id": t.project_id}).status_code == 201


def test_the_last_owner_cannot_leave_or_be_demoted(client: TestClient) -> None:
    t = make_tenant(client, "A")
    owners = [m for m in ok(client.get(f"/v1/orgs/{t.org_id}/memberships",
                                       headers=auth(t.owner))) if m["role"] == "owner"]
    assert len(owners) == 1
    path = f"/v1/orgs/{t.org_id}/memberships/{owners[0]['id']}"
    assert error_code(client.delete(path, headers=auth(t.owner)), 409) == "conflict"
    assert error_code(client.patch(path, json={"role": "admin"}, headers=auth(t.owner)),
                      409) == "conflict"
    second = add_member(client, t, "second@a.example", "owner")
    assert client.patch(path, json={"role": "admin"}, headers=auth(second)).status_code == 200
    assert client.delete(path, headers=auth(second)).status_code == 204
    # Leaving the org removes every role in it.
    assert client.get(f"/v1/projects/{t.project_id}", headers=auth(t.owner)).status_code == 404


def test_invitations_expire_are_single_use_and_bound_to_the_email(
    client: TestClient, cp: ControlPlane, clock: FakeClock
) -> None:
    t = make_tenant(client, "A")

    def invite(email: str) -> str:
        return str(ok(client.post(f"/v1/orgs/{t.org_id}/invitations", headers=auth(t.owner),
                                  json={"email": email, "role": "member"}), 201)["token"])

    token = invite("Carol@a.example")
    carol = signup(client, "carol@a.example")
    mallory = signup(client, "mallory@evil.example")
    stolen = client.post("/v1/invitations/accept", json={"token": token}, headers=auth(mallory))
    assert error_code(stolen, 403) == "forbidden"
    assert ok(client.post("/v1/invitations/accept", json={"token": token},
                          headers=auth(carol)))["role"] == "member"
    again = client.post("/v1/invitations/accept", json={"token": token}, headers=auth(carol))
    assert error_code(again, 410) == "gone"

    late = invite("dave@a.example")
    clock.advance(cp.settings.cp_invitation_ttl_s + 1)
    dave = signup(client, "dave@a.example")
    expired = client.post("/v1/invitations/accept", json={"token": late}, headers=auth(dave))
    assert error_code(expired, 410) == "gone"
    assert client.get(f"/v1/projects/{t.project_id}", headers=auth(dave)).status_code == 404
    unknown = client.post("/v1/invitations/accept", json={"token": "apinv_nope"},
                          headers=auth(dave))
    assert error_code(unknown, 404) == "not_found"


def test_adding_a_role_below_the_org_needs_an_org_member(client: TestClient) -> None:
    t = make_tenant(client, "A")
    outsider = signup(client, "outsider@b.example")
    refused = client.post(f"/v1/orgs/{t.org_id}/memberships", headers=auth(t.owner), json={
        "user_id": user_id(client, outsider), "role": "viewer", "project_id": t.project_id})
    assert error_code(refused, 404) == "not_found"
