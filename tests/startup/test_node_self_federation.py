"""``apiary up`` (both planes) with the federation endpoint on: the node's data plane is a
federated data plane of its own control plane, over the same loopback gRPC stream a remote
data plane dials (issue 16: the control plane's changes are pushed to the laptop too).

- A fresh data directory: the data plane registers (its identity file written), is listed
  active and connected within seconds, serves new projects, and serves the bootstrap
  project; the bootstrap key ingests; a signed-in user's token for the project's data
  plane (what the web UI asks for) reads the traces back; a metric and an alert rule
  created at the control plane arrive in the data plane's ``federation-config``; a new
  project is assigned to it. A restart connects again without a new registration.
- A data directory an earlier version left (a legacy audience, projects unassigned)
  upgrades on its next start: same data plane id, project and key; its events stay
  readable and it is federated from then on.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from _cp_metrics import deploy_python_metric

from apiary._private.ports import spare_port
from apiary.control import admin
from apiary.dataplane.federation.apply import key_token
from apiary.queue import connect
from apiary.settings import ApiarySettings
from apiary.startup.node import ApiaryNode, Connection

pytestmark = pytest.mark.ray

T = TypeVar("T")




def _settings(data_dir: Path, *, federation: bool) -> ApiarySettings:
    return ApiarySettings(data_dir=data_dir, port=spare_port(), ray_num_cpus=2,
                          writer_flush_interval_s=0.2, otlp_grpc_port=0,
                          federation_grpc_port=spare_port() if federation else 0)


def _until(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.2)


def _send(connection: Connection, name: str) -> str:
    event_id = str(uuid.uuid4())
    response = httpx.post(f"{connection.url}/v1/events/batch", timeout=30, json={"events": [{
        "event_type": "model", "event_name": name, "event_id": event_id,
        "session_id": str(uuid.uuid4()), "inputs": {"q": "where?"},
        "outputs": {"content": "here"}}]},
        headers={"authorization": f"Bearer {connection.api_key}"})
    assert response.status_code == 200, response.text
    return event_id


def _stored(url: str, token: str, event_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        response = httpx.get(f"{url}/v1/events/{event_id}", timeout=30,
                             headers={"authorization": f"Bearer {token}"})
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        event: dict[str, Any] = response.json()["event"]
        return event
    return _until(f"event {event_id} stored", probe, 60)


@contextmanager
def _admin(connection: Connection, password: str) -> Iterator[httpx.Client]:
    """The admin's signed-in client of the control plane (a session, as the web UI has)."""
    with httpx.Client(base_url=connection.control_plane_url, timeout=30) as client:
        login = client.post("/v1/auth/login", json={"email": connection.admin_email,
                                                    "password": password})
        assert login.status_code == 200, login.text
        client.headers["authorization"] = f"Bearer {login.json()['session_token']}"
        yield client


def _plane(client: httpx.Client, dp_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/data-planes/{dp_id}")
    assert response.status_code == 200, response.text
    plane: dict[str, Any] = response.json()
    return plane


def _connected(client: httpx.Client, dp_id: str, timeout: float = 15.0) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        plane = _plane(client, dp_id)
        return plane if plane["connected"] else None
    return _until(f"data plane {dp_id} connected", probe, timeout)


def _ui_token(client: httpx.Client, project_id: str) -> str:
    """What the web UI does: the project's data plane (``data_plane_id``), and a token for
    it exchanged with the user's session."""
    project = client.get(f"/v1/projects/{project_id}")
    assert project.status_code == 200, project.text
    audience = project.json()["data_plane_id"]
    assert audience is not None
    issued = client.post("/v1/auth/token", json={"audience": audience,
                                                 "project_id": project_id})
    assert issued.status_code == 200, issued.text
    return str(issued.json()["access_token"])


def _config_keys(node: ApiaryNode) -> set[str]:
    async def read() -> set[str]:
        assert node.nats_url is not None
        nc = await connect(node.nats_url, name="test-self-federation")
        try:
            kv = await nc.jetstream().key_value("federation-config")
            try:
                return set(await kv.keys())
            except Exception:  # no keys yet
                return set()
        finally:
            await nc.close()
    return asyncio.run(read())


def test_a_fresh_node_is_a_federated_data_plane_of_its_own_control_plane(
        tmp_path: Path) -> None:
    settings = _settings(tmp_path / "node", federation=True)
    node = ApiaryNode(settings)
    try:
        connection = node.start()
        assert connection.admin_password is not None
        dp_id = connection.data_plane_id
        assert dp_id == settings.data_plane_id  # the audience an older version used
        identity = json.loads((settings.data_dir / "dp-identity.json").read_text())
        assert identity["data_plane_id"] == dp_id
        assert json.loads((settings.data_dir / "connection.json").read_text())[
            "project_id"] == connection.project_id
        with _admin(connection, connection.admin_password) as cp:
            plane = _connected(cp, dp_id)
            assert (plane["federated"], plane["status"], plane["name"], plane["url"]) == (
                True, "active", "local", settings.base_url)
            assert plane["serves_new_projects"] is True
            assert plane["projects"] == [connection.project_id]
            assert len(cp.get("/v1/data-planes").json()) == 1  # no second record
            status = node.controller_status()
            assert status is not None
            assert status["connected"] is True
            assert status["endpoint"] == f"127.0.0.1:{settings.federation_grpc_port}"

            # The SDK's key ingests; the UI's token (a session's, for the project's data
            # plane) reads it back.
            event_id = _send(connection, "before-restart")
            token = _ui_token(cp, connection.project_id)
            assert _stored(connection.url, token, event_id)["event_name"] == "before-restart"

            # A metric and an alert rule made at the control plane are pushed to it.
            with admin.control_plane(node.settings) as cp_handle:
                metric_id = deploy_python_metric(cp_handle, connection.project_id, "pushed")
            created = cp.post(f"/v1/projects/{connection.project_id}/alerts", json={
                "name": "errors", "condition": {
                    "type": "aggregate", "field": "error_rate", "window_s": 60,
                    "warning": {"op": ">=", "value": 0.5}}})
            assert created.status_code == 201, created.text
            project = key_token(connection.project_id)
            alert_key = f"alert_rule.{project}.{key_token(created.json()['id'])}"
            keys = _until("the alert rule and the metric pushed", lambda: (
                k if {alert_key, f"metric.{project}"} <= (k := _config_keys(node)) else None),
                15)
            assert alert_key in keys
            assert metric_id  # pushed within the project's metric document

            # A project created now is the local data plane's.
            org = cp.get("/v1/orgs").json()[0]["id"]
            workspace = cp.get(f"/v1/orgs/{org}/workspaces").json()[0]["id"]
            made = cp.post(f"/v1/workspaces/{workspace}/projects", json={"name": "second"})
            assert made.status_code == 201, made.text
            assert made.json()["data_plane_id"] == dp_id
            registered_at = plane["created_at"], _registered_at(node.settings, dp_id)
        node.stop()

        # A restart (on another port: the identity's issuer and the record's URL follow
        # the node's own control plane): the identity is found, nothing registers again,
        # the stream is back.
        key_file = (settings.data_dir / "dp-identity.key").read_bytes()
        again = ApiaryNode(settings.model_copy(update={"port": spare_port()}))
        node = again
        connection = again.start()
        assert connection.data_plane_id == dp_id
        assert (settings.data_dir / "dp-identity.key").read_bytes() == key_file
        admin_password = _reset_password(again.settings)
        with _admin(connection, admin_password) as cp:
            plane = _connected(cp, dp_id)
            assert (plane["created_at"], _registered_at(again.settings, dp_id)) == registered_at
            assert plane["url"] == again.settings.base_url != settings.base_url
            moved = json.loads((settings.data_dir / "dp-identity.json").read_text())
            assert moved["issuer"] == again.settings.cp_issuer_url
            assert len(cp.get("/v1/data-planes").json()) == 1
            token = _ui_token(cp, connection.project_id)
            assert _stored(connection.url, token, event_id)["event_name"] == "before-restart"
            after = _send(connection, "after-restart")
            assert _stored(connection.url, token, after)["event_name"] == "after-restart"
    finally:
        node.stop()


def _registered_at(settings: ApiarySettings, dp_id: str) -> str | None:
    from apiary.control.db import DataPlane

    with admin.control_plane(settings) as cp, cp.transaction() as db:
        plane = db.get(DataPlane, dp_id)
        assert plane is not None
        return None if plane.registered_at is None else plane.registered_at.isoformat()


def _reset_password(settings: ApiarySettings) -> str:
    """The admin's password is shown once: a restarted node's test sets a new one."""
    reset = admin.users_reset_password(settings, email="admin@apiary.local")
    return str(reset["password"])


def test_a_legacy_data_dir_upgrades_keeping_its_events_keys_and_projects(
        tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    legacy = ApiaryNode(_settings(data_dir, federation=False))
    try:
        before = legacy.start()
        assert before.data_plane_id is None
        assert not (data_dir / "dp-identity.json").exists()
        event_id = _send(before, "legacy")
        assert _stored(before.url, before.api_key, event_id)["event_name"] == "legacy"
    finally:
        legacy.stop()

    node = ApiaryNode(_settings(data_dir, federation=True))
    try:
        after = node.start()
        assert (after.project_id, after.api_key) == (before.project_id, before.api_key)
        assert after.data_plane_id == node.settings.data_plane_id
        assert (data_dir / "dp-identity.json").exists()
        with _admin(after, _reset_password(node.settings)) as cp:
            plane = _connected(cp, after.data_plane_id)
            assert (plane["federated"], plane["status"], plane["serves_new_projects"]) == (
                True, "active", True)
            assert plane["projects"] == [after.project_id]
            assert len(cp.get("/v1/data-planes").json()) == 1
            # The event stored before, read with the same key and with the UI's token.
            assert _stored(after.url, after.api_key, event_id)["event_name"] == "legacy"
            token = _ui_token(cp, after.project_id)
            assert _stored(after.url, token, event_id)["event_name"] == "legacy"
            fresh = _send(after, "federated")
            assert _stored(after.url, after.api_key, fresh)["event_name"] == "federated"
    finally:
        node.stop()
