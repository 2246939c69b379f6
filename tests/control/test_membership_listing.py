"""The org's membership listing names each member's email (the settings page's members
table), to those who may read the org's members, and to no one else."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ._tenants import add_member, auth, make_tenant, ok


def test_listing_names_each_members_email(client: TestClient) -> None:
    a = make_tenant(client, "A")
    viewer = add_member(client, a, "viewer@a.example", "viewer")
    listed = ok(client.get(f"/v1/orgs/{a.org_id}/memberships", headers=auth(a.owner)))
    assert {(m["email"], m["role"]) for m in listed} == {
        ("owner-a@a.example", "owner"), ("viewer@a.example", "viewer")}
    # The single membership answers (add, change) stay as they were: no email needed there.
    member = next(m for m in listed if m["email"] == "viewer@a.example")
    changed = ok(client.patch(f"/v1/orgs/{a.org_id}/memberships/{member['id']}",
                              headers=auth(a.owner), json={"role": "member"}))
    assert changed["role"] == "member"
    assert ok(client.get("/v1/me", headers=auth(viewer)))["user"]["email"] == "viewer@a.example"


def test_another_orgs_owner_learns_no_member_email(client: TestClient) -> None:
    a, b = make_tenant(client, "A"), make_tenant(client, "B")
    attempt = client.get(f"/v1/orgs/{a.org_id}/memberships", headers=auth(b.owner))
    assert attempt.status_code == 404, attempt.text
    assert "owner-a@a.example" not in attempt.text
    own = ok(client.get(f"/v1/orgs/{b.org_id}/memberships", headers=auth(b.owner)))
    assert [m["email"] for m in own] == ["owner-b@b.example"]
