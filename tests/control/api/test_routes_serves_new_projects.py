"""The data plane that serves new projects (``PUT /v1/data-planes/{id}/serves-new-projects``,
``apiary data-planes default``): a project created while one is marked is assigned to it in
the creating transaction, so its config-log entries are stamped for it and its keys' tokens
route to it. Only an installation admin marks one, only an active federated one; at most
one is marked."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from apiary.control import ControlPlane, admin
from apiary.control.db import ConfigChange, DataPlane

from .._tenants import auth, error_code, make_tenant, ok, project_key
from ..conftest import DATA_PLANE_ID, FakeClock
from ..federation._keys import create, create_and_register, installation_admin
from ._cli import control_cli


@pytest.fixture
def root(client: TestClient) -> str:
    return installation_admin(client)


def _mark(client: TestClient, token: str, dp_id: str, enabled: bool = True) -> Any:
    return client.put(f"/v1/data-planes/{dp_id}/serves-new-projects",
                      json={"enabled": enabled}, headers=auth(token))


def _marked(client: TestClient, token: str) -> list[str]:
    return [p["id"] for p in ok(client.get("/v1/data-planes", headers=auth(token)))
            if p["serves_new_projects"]]


def test_a_new_project_is_assigned_to_the_marked_data_plane_in_its_transaction(
        client: TestClient, cp: ControlPlane, root: str) -> None:
    plane = create_and_register(client, root, "local", url="https://local.example")
    body = ok(_mark(client, root, plane.id))
    assert body["serves_new_projects"] is True
    assert body["id"] == plane.id
    assert _marked(client, root) == [plane.id]
    tenant = make_tenant(client, "Acme")
    project = ok(client.get(f"/v1/projects/{tenant.project_id}", headers=auth(tenant.owner)))
    assert project["data_plane_id"] == plane.id
    with cp.transaction() as db:
        assigned = db.scalars(select(ConfigChange).where(
            ConfigChange.kind == "project_assigned",
            ConfigChange.project_id == tenant.project_id)).all()
    assert [(e.data_plane_id, e.payload["data_plane_id"]) for e in assigned] == [
        (plane.id, plane.id)]
    # Its keys' tokens route to it: its identity gets one, the legacy audience a 421.
    key = project_key(client, tenant)
    exchanged = client.post("/v1/auth/token", json={},
                            headers={**auth(key), "Apiary-Data-Plane": plane.identity()})
    assert ok(exchanged)["access_token"]
    legacy = client.post("/v1/auth/token", json={"audience": DATA_PLANE_ID}, headers=auth(key))
    assert error_code(legacy, 421) == "wrong_data_plane"
    assert legacy.json()["data_plane_url"] == "https://local.example"


def test_marking_one_unmarks_the_other_and_unmarking_leaves_new_projects_unassigned(
        client: TestClient, root: str) -> None:
    one = create_and_register(client, root, "one", url="https://one.example")
    two = create_and_register(client, root, "two", url="https://two.example")
    ok(_mark(client, root, one.id))
    ok(_mark(client, root, two.id))
    assert _marked(client, root) == [two.id]
    first = make_tenant(client, "Acme")
    assert ok(client.get(f"/v1/projects/{first.project_id}",
                         headers=auth(first.owner)))["data_plane_id"] == two.id
    assert ok(_mark(client, root, two.id, False))["serves_new_projects"] is False
    assert _marked(client, root) == []
    second = make_tenant(client, "Bolt")
    assert ok(client.get(f"/v1/projects/{second.project_id}",
                         headers=auth(second.owner)))["data_plane_id"] is None
    # Existing projects keep their data plane.
    assert ok(client.get(f"/v1/projects/{first.project_id}",
                         headers=auth(first.owner)))["data_plane_id"] == two.id


def test_only_an_installation_admin_marks_a_data_plane(client: TestClient, root: str) -> None:
    tenant = make_tenant(client, "Acme")
    shared = create_and_register(client, root, "shared")
    # An org's owner: not for a shared data plane, nor for one dedicated to their org
    # (the choice spans every organization).
    dedicated = create_and_register(client, tenant.owner, "acme", org_id=tenant.org_id)
    for dp_id in (shared.id, dedicated.id):
        assert error_code(_mark(client, tenant.owner, dp_id), 403) == "forbidden"
    # A project key never manages data planes.
    assert error_code(_mark(client, project_key(client, tenant), shared.id),
                      403) == "forbidden"
    assert _marked(client, root) == []


def test_marking_needs_a_recent_login(client: TestClient, cp: ControlPlane, clock: FakeClock,
                                      root: str) -> None:
    plane = create_and_register(client, root)
    clock.advance(cp.settings.cp_recent_auth_s + 1)
    assert error_code(_mark(client, root, plane.id), 401) == "reauthentication_required"


def test_a_legacy_pending_or_revoked_data_plane_cannot_be_marked(
        client: TestClient, root: str) -> None:
    pending = create(client, root, "pending")
    revoked = create_and_register(client, root, "gone")
    ok(client.post(f"/v1/data-planes/{revoked.id}/revoke", headers=auth(root)))
    for dp_id, state in ((DATA_PLANE_ID, "a legacy audience"), (pending["id"], "pending"),
                         (revoked.id, "revoked")):
        response = _mark(client, root, dp_id)
        assert error_code(response, 409) == "conflict"
        assert f"data plane {dp_id} is {state}" in response.json()["message"]
    assert _marked(client, root) == []
    assert error_code(_mark(client, root, "dp-nonexistent"), 404) == "not_found"


def test_revoking_the_marked_data_plane_unmarks_it(client: TestClient, root: str) -> None:
    plane = create_and_register(client, root)
    ok(_mark(client, root, plane.id))
    ok(client.post(f"/v1/data-planes/{plane.id}/revoke", headers=auth(root)))
    assert _marked(client, root) == []
    tenant = make_tenant(client, "Acme")
    assert ok(client.get(f"/v1/projects/{tenant.project_id}",
                         headers=auth(tenant.owner)))["data_plane_id"] is None


def test_a_marked_dedicated_data_plane_gets_only_its_orgs_new_projects(
        client: TestClient, cp: ControlPlane, root: str) -> None:
    acme = make_tenant(client, "Acme")
    dedicated = create_and_register(client, acme.owner, "acme", org_id=acme.org_id)
    ok(_mark(client, root, dedicated.id))
    workspace = acme.workspace_id
    mine = ok(client.post(f"/v1/workspaces/{workspace}/projects", json={"name": "second"},
                          headers=auth(acme.owner)), 201)
    assert mine["data_plane_id"] == dedicated.id
    other = make_tenant(client, "Bolt")
    assert ok(client.get(f"/v1/projects/{other.project_id}",
                         headers=auth(other.owner)))["data_plane_id"] is None


def test_cli_default_marks_and_unmarks(client: TestClient, cp: ControlPlane, root: str,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    plane = create_and_register(client, root)
    settings = cp.settings
    parser = control_cli(cp, monkeypatch)

    def run(*argv: str) -> dict[str, Any]:
        args = parser.parse_args(["data-planes", "default", *argv,
                                  "--data-dir", str(settings.data_dir), "--json"])
        assert args.func(args) == 0
        printed: dict[str, Any] = json.loads(capsys.readouterr().out)
        return printed

    assert run(plane.id)["serves_new_projects"] is True
    assert _marked(client, root) == [plane.id]
    assert run(plane.id, "--off")["serves_new_projects"] is False
    assert _marked(client, root) == []
    with pytest.raises(Exception, match="legacy audience"):
        admin.data_planes_default(settings, dp_id=DATA_PLANE_ID)
    with cp.transaction() as db:
        legacy = db.get(DataPlane, DATA_PLANE_ID)
        assert legacy is not None
        assert legacy.serves_new_projects is False
