"""``apiary status --all`` lists every data plane of a real control plane served over HTTP
(its app under uvicorn, its own SQLite cpdb): data planes created and registered through the
control plane's registry (apiary.control.federation), one with a health report, a
connected stream and a project. Asked on the control plane's host (its data directory
names it: a session of the installation admin, made for the request and revoked after it)
and from anywhere with ``--control-plane URL --token T``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from _served_planes import served_control_plane
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from apiary.cli import main
from apiary.control import ControlPlane, admin
from apiary.control.db import DataPlane, Project, UserSession
from apiary.control.federation import create_data_plane, register_data_plane_key
from apiary.settings import ApiarySettings

ADMIN = "admin@apiary.local"


@dataclass
class ServedControlPlane:
    url: str
    data_dir: Path
    admin_password: str
    active_id: str
    pending_id: str
    project_id: str


def _jwk() -> dict[str, str]:
    import base64

    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()

    def b64(value: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode()

    return {"kty": "EC", "crv": "P-256", "x": b64(numbers.x), "y": b64(numbers.y)}


@pytest.fixture
def control_plane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> Iterator[ServedControlPlane]:
    for name in list(os.environ):
        if name.startswith("APIARY_") and name != "APIARY_OTLP_GRPC_PORT":
            monkeypatch.delenv(name)
    data_dir = tmp_path / "cp"
    settings = ApiarySettings(data_dir=data_dir)
    first = admin.bootstrap(settings, admin_email=ADMIN, mint_key=False,
                            local_data_plane=False)
    project_id = first["project"]["id"]
    cp = ControlPlane.open(settings, migrate=True)
    try:
        with cp.transaction() as db:
            active, token = create_data_plane(db, name="eu-1", url="https://eu1.example.com",
                                              org_id=None, now=cp.now())
            pending, _ = create_data_plane(db, name="us-1", url="https://us1.example.com",
                                           org_id=None, now=cp.now())
            register_data_plane_key(db, bootstrap_token=token, public_jwk=_jwk(),
                                    apiary_version="0.9.1", now=cp.now())
            # What the controller records from eu-1's stream (a health report 3 s ago).
            active.connected = True
            active.last_seen_at = cp.now() - timedelta(seconds=3)
            active.last_health = {"at_unix_ms": int((time.time() - 3) * 1000),
                                  "ingest_rate": 125.5, "writer_lag": 17, "dead_letters": 2,
                                  "status": "ok"}
            db.get_one(Project, project_id).data_plane_id = active.id
            active_id, pending_id = active.id, pending.id
    finally:
        cp.close()
    with served_control_plane(settings) as url:
        # What `apiary up --plane control` leaves for the CLI (this process stands in).
        (data_dir / "state.json").write_text(json.dumps({
            "pid": os.getpid(), "plane": "control", "url": "http://127.0.0.1:1",
            "control_plane_url": url, "federation_endpoint": "127.0.0.1:4320"}))
        yield ServedControlPlane(url, data_dir, first["admin_password"], active_id,
                                 pending_id, project_id)


def _login(served: ServedControlPlane) -> str:
    answer = httpx.post(f"{served.url}/v1/auth/login",
                        json={"email": ADMIN, "password": served.admin_password}, timeout=30)
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["session_token"]
    return token


def test_on_the_control_planes_host_every_data_plane_is_listed(
    control_plane: ServedControlPlane, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["status", "--all", "--data-dir", str(control_plane.data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"data planes of {control_plane.url}: 2" in out
    header, *rows = [line.split() for line in out.splitlines()[1:]]
    assert header[:3] == ["name", "id", "status"]
    eu = next(r for r in rows if r[0] == "eu-1")
    us = next(r for r in rows if r[0] == "us-1")
    # name, id, status, connected, last report (2 words), version, ingest/s, lag, dead, projects
    assert eu == ["eu-1", control_plane.active_id, "active", "yes", eu[4], "ago", "0.9.1",
                  "125.5", "17", "2", control_plane.project_id]
    assert eu[4] in {"3s", "4s", "5s", "6s"}
    assert us == ["us-1", control_plane.pending_id, "pending", "no", "never", "-", "-", "-",
                  "-", "-"]


def test_the_hosts_admin_session_is_revoked_after_the_request(
    control_plane: ServedControlPlane, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["status", "--all", "--json", "--data-dir", str(control_plane.data_dir)]) == 0
    planes = json.loads(capsys.readouterr().out)["data_planes"]
    assert {p["id"] for p in planes} == {control_plane.active_id, control_plane.pending_id}
    cp = ControlPlane.open(ApiarySettings(data_dir=control_plane.data_dir))
    try:
        with cp.transaction() as db:
            cli = list(db.scalars(select(UserSession).where(UserSession.auth_method == "cli")))
            assert len(cli) == 1
            assert cli[0].revoked_at is not None
            assert db.get_one(DataPlane, control_plane.active_id).status == "active"
    finally:
        cp.close()


def test_from_anywhere_with_the_control_planes_url_and_an_admins_token(
    control_plane: ServedControlPlane, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    token = _login(control_plane)
    elsewhere = tmp_path / "elsewhere"  # no control plane here
    assert main(["status", "--all", "--json", "--data-dir", str(elsewhere),
                 "--control-plane", control_plane.url, "--token", token]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["control_plane_url"] == control_plane.url
    eu = next(p for p in report["data_planes"] if p["id"] == control_plane.active_id)
    assert eu["connected"] is True
    assert eu["projects"] == [control_plane.project_id]
    assert eu["last_health"]["writer_lag"] == 17


def test_a_refused_token_says_so(control_plane: ServedControlPlane,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["status", "--all", "--control-plane", control_plane.url,
                 "--token", "aps_not-a-session"])
    assert code == 1
    assert "refused the token" in capsys.readouterr().err


def test_control_plane_without_token_and_no_local_control_plane_are_usage_errors(
    control_plane: ServedControlPlane, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    assert main(["status", "--all", "--control-plane", control_plane.url]) == 2
    assert "--token" in capsys.readouterr().err
    assert main(["status", "--all", "--data-dir", str(tmp_path / "nothing")]) == 2
    assert "no control plane runs" in capsys.readouterr().err


def test_an_unreachable_control_plane_is_a_failure_not_a_crash(
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    from _servers import free_port

    code = main(["status", "--all", "--data-dir", str(tmp_path), "--control-plane",
                 f"http://127.0.0.1:{free_port()}/cp", "--token", "aps_x"])
    assert code == 1
    assert "did not answer" in capsys.readouterr().err
