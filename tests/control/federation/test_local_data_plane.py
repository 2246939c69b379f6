"""``prepare_local_data_plane``: how an ``apiary up`` node running both planes makes its
data plane a federated data plane of its own control plane, in-process. The legacy
audience an earlier version registered keeps its id (tokens minted for it stay valid),
becomes federated and pending with a one-time bootstrap token, serves new projects, and
gets every unassigned project; then it registers exactly as a remote data plane does."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from apiary.control import ControlPlane
from apiary.control.db import ConfigChange, DataPlane, Project
from apiary.control.federation import prepare_local_data_plane
from apiary.errors import Conflict

from .._tenants import auth, error_code, make_tenant, ok, project_key, verify
from ..conftest import DATA_PLANE_ID
from ._keys import DataPlaneKey, create_and_register, installation_admin, register


def _prepare(cp: ControlPlane, dp_id: str = DATA_PLANE_ID) -> str:
    with cp.transaction() as db:
        _plane, token = prepare_local_data_plane(db, dp_id=dp_id, name="local",
                                                 url="http://127.0.0.1:8787/", now=cp.now())
        return token


def test_the_legacy_local_audience_becomes_a_federated_data_plane_with_its_projects(
        client: TestClient, cp: ControlPlane) -> None:
    acme, bolt = make_tenant(client, "Acme"), make_tenant(client, "Bolt")
    key = project_key(client, acme)
    token = _prepare(cp)
    with cp.transaction() as db:
        plane = db.get(DataPlane, DATA_PLANE_ID)
        assert plane is not None
        assert (plane.federated, plane.status, plane.serves_new_projects) == (
            True, "pending", True)
        assert (plane.name, plane.url) == ("local", "http://127.0.0.1:8787")
        assert {p.id: p.data_plane_id for p in db.scalars(select(Project))} == {
            acme.project_id: DATA_PLANE_ID, bolt.project_id: DATA_PLANE_ID}
        # The assignments are in the config log, stamped for it (the stream replays them).
        stamped = set(db.scalars(select(ConfigChange.project_id).where(
            ConfigChange.kind == "project_assigned",
            ConfigChange.data_plane_id == DATA_PLANE_ID)))
    assert stamped == {acme.project_id, bolt.project_id}
    local = DataPlaneKey()
    body = ok(register(client, token, local))
    assert (body["data_plane_id"], body["name"]) == (DATA_PLANE_ID, "local")
    # The same audience as before: a token exchanged with its identity names it.
    exchanged = client.post("/v1/auth/token", json={},
                            headers={**auth(key), "Apiary-Data-Plane":
                                     local.identity(DATA_PLANE_ID)})
    claims = verify(client, ok(exchanged)["access_token"], audience=DATA_PLANE_ID)
    assert claims["project_id"] == acme.project_id
    # A project created from now on is its too.
    carol = make_tenant(client, "Carol")
    assert ok(client.get(f"/v1/projects/{carol.project_id}",
                         headers=auth(carol.owner)))["data_plane_id"] == DATA_PLANE_ID


def test_a_lost_registration_answer_is_registered_again_with_a_new_token(
        client: TestClient, cp: ControlPlane) -> None:
    first = _prepare(cp)
    key = DataPlaneKey()
    ok(register(client, first, key))
    # The node crashed before writing its identity: the next start prepares again.
    second = _prepare(cp)
    assert error_code(register(client, first, key), 401) == "unauthenticated"
    ok(register(client, second, key))
    with cp.transaction() as db:
        plane = db.get(DataPlane, DATA_PLANE_ID)
        assert plane is not None
        assert plane.status == "active"
        assert plane.key_thumbprint == key.kid


def test_another_marked_data_plane_keeps_its_mark(client: TestClient, cp: ControlPlane) -> None:
    root = installation_admin(client)
    other = create_and_register(client, root, "remote")
    ok(client.put(f"/v1/data-planes/{other.id}/serves-new-projects", json={"enabled": True},
                  headers=auth(root)))
    _prepare(cp)
    with cp.transaction() as db:
        marked = list(db.scalars(select(DataPlane.id).where(
            DataPlane.serves_new_projects.is_(True))))
    assert marked == [other.id]


def test_a_revoked_local_data_plane_is_not_brought_back(client: TestClient,
                                                        cp: ControlPlane) -> None:
    token = _prepare(cp)
    ok(register(client, token))
    root = installation_admin(client)
    ok(client.post(f"/v1/data-planes/{DATA_PLANE_ID}/revoke", headers=auth(root)))
    with pytest.raises(Conflict, match="was revoked"):
        _prepare(cp)
    with cp.transaction() as db:
        plane = db.get(DataPlane, DATA_PLANE_ID)
        assert plane is not None
        assert plane.status == "revoked"


def test_a_missing_record_is_created(client: TestClient, cp: ControlPlane) -> None:
    token = _prepare(cp, "apiary-laptop")
    assert ok(register(client, token))["data_plane_id"] == "apiary-laptop"
