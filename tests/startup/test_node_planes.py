"""``apiary up --plane control`` and ``--plane data`` on real Ray: what each starts, and what
it does not.

- A control-plane-only node runs Ray, Serve, the control plane at ``/cp`` and its
  federation controller, and nothing of the data plane: no nats-server, no ClickHouse, no
  writers or evaluators; its ``/readyz`` checks the control plane (and its database) and the
  federation endpoint; ``connection.json`` names the control plane, the admin account and the
  federation endpoint; ``apiary status`` reports it.
- A data-plane-only node registers with a control plane served elsewhere (a bootstrap token
  from the control plane's registry), runs the data plane and its federation controller,
  and holds no control-plane secret (settings, environment, data directory).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _served_planes import served_control_plane

from apiary._private.ports import spare_port
from apiary.control import ControlPlane, admin
from apiary.control.federation import create_data_plane
from apiary.settings import ApiarySettings, plane_secrets
from apiary.startup.node import ApiaryNode

pytestmark = pytest.mark.ray




def _named_actors() -> set[str]:
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}


@pytest.fixture(scope="module")
def control_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiaryNode]:
    data_dir = tmp_path_factory.mktemp("control-node")
    settings = ApiarySettings(data_dir=data_dir, port=spare_port(), ray_num_cpus=2,
                              plane="control", federation_grpc_port=spare_port())
    node = ApiaryNode(settings)
    node.start()
    yield node
    node.stop()


def test_control_node_runs_no_data_plane(control_node: ApiaryNode) -> None:
    data_dir = control_node.settings.data_dir
    assert not (data_dir / "nats").exists()
    assert not (data_dir / "clickhouse").exists()
    assert not (data_dir / "dp.sqlite").exists()
    assert (data_dir / "cp.sqlite").exists()
    actors = _named_actors()
    assert not any(name.startswith(("apiary-writer", "apiary-evaluator", "apiary-clickhouse",
                                    "apiary-dp-controller")) for name in actors), actors
    state = json.loads((data_dir / "state.json").read_text())
    assert state["plane"] == "control"
    assert state["nats"] is None
    assert state["nats_pid"] is None
    assert state["clickhouse"] is None
    # The control plane answers at /cp; nothing of the data plane's API at /.
    base = control_node.settings.base_url
    assert httpx.get(f"{base}/cp/healthz", timeout=10).json()["status"] == "ok"
    missing = httpx.get(f"{base}/v1/events", timeout=10)
    assert missing.status_code == 404
    assert "control plane only" in missing.json()["message"]


def test_control_node_connection_json_names_the_control_plane_and_admin(
    control_node: ApiaryNode,
) -> None:
    settings = control_node.settings
    connection = json.loads((settings.data_dir / "connection.json").read_text())
    assert connection["plane"] == "control"
    assert connection["control_plane_url"] == f"{settings.base_url}/cp"
    assert connection["admin_email"] == "admin@apiary.local"
    assert "api_key" not in connection
    assert "admin_password" not in connection
    assert control_node.connection is not None
    assert control_node.connection.admin_password  # shown once, by this first start
    assert connection.get("federation_endpoint") == control_node.federation_endpoint()


def test_control_node_readiness_checks_the_control_plane_and_federation(
    control_node: ApiaryNode,
) -> None:
    answer = httpx.get(f"{control_node.settings.base_url}/readyz", timeout=30)
    body = answer.json()
    assert answer.status_code == 200, body
    assert body["ready"] is True
    assert body["not_ready"] == []
    assert set(body["checks"]) == {"control_plane", "federation"}
    assert body["checks"]["control_plane"]["ok"] is True
    federation = body["checks"]["federation"]
    assert federation["ok"] is True
    endpoint = control_node.federation_endpoint()
    if endpoint is not None:
        assert federation["detail"]["port"] == int(endpoint.rsplit(":", 1)[1])


def test_status_reports_the_control_node(control_node: ApiaryNode) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "apiary.cli", "status"], capture_output=True, text=True,
        env={**os.environ, "APIARY_DATA_DIR": str(control_node.settings.data_dir)},
        timeout=60)
    assert result.returncode == 0, result.stderr
    assert "control plane is running" in result.stdout
    assert f"control plane: {control_node.settings.base_url}/cp" in result.stdout
    assert "ready:         yes" in result.stdout


def test_data_planes_created_at_the_control_node_show_in_status_all(
    control_node: ApiaryNode,
) -> None:
    created = admin.data_planes_create(control_node.settings, name="eu-1",
                                       url="https://eu1.example.com")
    assert created["bootstrap_token"].startswith("apiary_dpb_")
    result = subprocess.run(
        [sys.executable, "-m", "apiary.cli", "status", "--all", "--json"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "APIARY_DATA_DIR": str(control_node.settings.data_dir)})
    assert result.returncode == 0, result.stderr
    [plane] = json.loads(result.stdout)["data_planes"]
    assert (plane["id"], plane["name"], plane["status"]) == (created["id"], "eu-1", "pending")


def test_control_node_stops_and_leaves_nothing_running(control_node: ApiaryNode) -> None:
    """Last in this module: stop, then a second start on the same directory reuses the
    admin account (no new password)."""
    control_node.stop()
    assert not (control_node.settings.data_dir / "state.json").exists()
    again = ApiaryNode(control_node.settings)
    try:
        connection = again.start()
        assert connection.admin_password is None
        assert connection.plane == "control"
    finally:
        again.stop()


# --- a data-plane-only node ----------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[ApiarySettings, str]]:
    """A control plane served by this process (uvicorn, its own cpdb): its settings and
    URL."""
    settings = ApiarySettings(data_dir=tmp_path_factory.mktemp("shared-cp"),
                              federation_grpc_port=0)
    admin.bootstrap(settings, admin_email="admin@apiary.local", mint_key=False,
                    local_data_plane=False)
    with served_control_plane(settings) as url:
        yield settings, url


def _bootstrap_token(cp_settings: ApiarySettings, url: str) -> str:
    cp = ControlPlane.open(cp_settings)
    try:
        with cp.transaction() as db:
            _, token = create_data_plane(db, name="eu-1", url=url, org_id=None, now=cp.now())
    finally:
        cp.close()
    return token


def test_data_node_registers_and_holds_no_control_plane_secret(
    shared_control_plane: tuple[ApiarySettings, str],
    tmp_path: Path,
) -> None:
    cp_settings, cp_url = shared_control_plane
    port = spare_port()
    settings = ApiarySettings(
        data_dir=tmp_path / "dp", port=port, ray_num_cpus=2, plane="data",
        control_plane_url=cp_url, jwt_issuer=cp_settings.cp_issuer_url,
        bootstrap_token=_bootstrap_token(cp_settings, f"http://127.0.0.1:{port}"),
        writer_flush_interval_s=0.2)
    node = ApiaryNode(settings)
    try:
        connection = node.start()
        assert connection.plane == "data"
        assert connection.control_plane_url == cp_url
        identity = json.loads((settings.data_dir / "dp-identity.json").read_text())
        assert identity["data_plane_id"].startswith("dp-")
        assert connection.data_plane_id == identity["data_plane_id"]
        written = json.loads((settings.data_dir / "connection.json").read_text())
        assert written == {"plane": "data", "url": settings.base_url,
                           "control_plane_url": cp_url,
                           "data_plane_id": identity["data_plane_id"]}
        for name in ("dp-identity.json", "dp-identity.key"):
            assert (settings.data_dir / name).stat().st_mode & 0o077 == 0
        # No control-plane secret anywhere on this node: its settings, its environment
        # (inherited by the Ray workers it started), its data directory.
        for field in plane_secrets("control"):
            assert getattr(node.settings, field) is None, field
            assert f"APIARY_{field.upper()}" not in os.environ, field
        assert not (settings.data_dir / "cp.sqlite").exists()
        assert not (settings.data_dir / "cp-envelope.key").exists()
        # The data plane runs, with its federation controller and no control plane.
        assert httpx.get(f"{settings.base_url}/healthz", timeout=10).status_code == 200
        assert httpx.get(f"{settings.base_url}/cp/healthz", timeout=10).status_code == 404
        actors = _named_actors()
        assert "apiary-dp-controller" in actors
        assert "apiary-cp-controller" not in actors
        cp = ControlPlane.open(cp_settings)  # the control plane saw it register
        try:
            from apiary.control.db import DataPlane

            with cp.transaction() as db:
                plane = db.get_one(DataPlane, identity["data_plane_id"])
                assert plane.status == "active"
                assert plane.key_thumbprint is not None
        finally:
            cp.close()
    finally:
        node.stop()


# --- both planes (the default) -------------------------------------------------------------


def test_both_planes_node_also_runs_the_control_plane_controller(tmp_path: Path) -> None:
    federation_port = spare_port()
    settings = ApiarySettings(data_dir=tmp_path / "both", port=spare_port(), ray_num_cpus=2,
                              federation_grpc_port=federation_port)
    node = ApiaryNode(settings)
    try:
        connection = node.start()
        assert connection.plane == "both"
        assert connection.api_key  # today's bootstrap: a project key for the local data plane
        assert connection.federation_endpoint == f"127.0.0.1:{federation_port}"
        assert "apiary-cp-controller" in _named_actors()
        with socket.create_connection(("127.0.0.1", federation_port), timeout=10):
            pass  # the federation endpoint listens
        # The embedded data plane is a federated data plane of this control plane: its
        # identity, and its controller keeping the stream (tests/startup/
        # test_node_self_federation.py follows it further).
        assert (settings.data_dir / "dp-identity.json").exists()
        assert connection.data_plane_id == settings.data_plane_id
        assert "apiary-dp-controller" in _named_actors()
    finally:
        node.stop()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(
            ("127.0.0.1", federation_port), timeout=5):
        pass  # stopped with the node


# --- a control-plane cluster's federation application ---------------------------------------


def test_cluster_control_plane_services_keep_the_controller_listening(tmp_path: Path) -> None:
    """What the ``federation`` application's supervisor runs (apiary.startup.cluster):
    the controller listens after start, listens again after Ray restarted its killed
    process (ensure_running), and stops listening on stop."""
    import ray

    from apiary.actors.cp_controller import CP_CONTROLLER_NAME
    from apiary.startup.cluster import ControlPlaneServices

    port = spare_port()
    settings = ApiarySettings(data_dir=tmp_path / "cp", federation_grpc_port=port)
    ray.init(num_cpus=2, include_dashboard=False, namespace="apiary",
             logging_level="WARNING", log_to_driver=False)
    try:
        services = ControlPlaneServices(settings)
        services.start()
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
        actor = ray.get_actor(CP_CONTROLLER_NAME, namespace="apiary")
        first_pid = ray.get(actor.status.remote(), timeout=30)["pid"]
        ray.kill(actor, no_restart=False)  # Ray restarts it (max_restarts=-1)
        # The kill is asynchronous: until the new process answers, calls may still reach
        # the old one or fail while Ray restarts it.
        deadline = time.monotonic() + 60
        while True:
            try:
                services.ensure_running()
                status = ray.get(actor.status.remote(), timeout=30)
                if status["pid"] != first_pid:
                    break
            except ray.exceptions.RayError:
                pass
            assert time.monotonic() < deadline, "the controller never came back"
            time.sleep(0.2)
        assert status["port"] == port
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
        assert services.stop() == []
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        ray.shutdown()
