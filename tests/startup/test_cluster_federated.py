"""A dedicated data plane's cluster (kuberay/rayservice-data-plane.yaml): ``python -m
apiary.startup.cluster identity`` registers it with a real control plane (served over HTTP,
its own cpdb) using the bootstrap token, once; later runs and the builders find the
identity and never spend the token again; a refused token is exit 2 with the control
plane's reason, an unreachable control plane exit 1 (the init container is retried)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _served_planes import served_control_plane
from _servers import free_port
from ray.serve import Application

from apiary.control import ControlPlane, admin
from apiary.control.db import DataPlane
from apiary.control.federation import create_data_plane
from apiary.errors import ConfigurationError
from apiary.settings import ApiarySettings
from apiary.startup import cluster

SetEnv = Callable[[dict[str, str]], None]


def _dp_env(cp_url: str, data_dir: Path, token: str) -> dict[str, str]:
    """A data-plane cluster node's environment (tests/startup/test_cluster.py's) plus the
    federation: the shared control plane's URL and issuer, the token, the identity volume."""
    return {
        "APIARY_NATS_URL": "nats://apiary:pw@nats:4222",
        "APIARY_NATS_REPLICAS": "3",
        "APIARY_CLICKHOUSE_URL": "http://apiary:pw@clickhouse:8123",
        "APIARY_DP_DATABASE_URL": "postgresql+psycopg://apiary_dp:pw@postgres:5432/dpdb",
        "APIARY_OBJECT_STORE_URL": "s3://apiary/objects",
        "APIARY_REDIS_URL": "redis://:pw@redis:6379/0",
        "APIARY_DP_ENVELOPE_KEY": base64.urlsafe_b64encode(b"d" * 32).decode(),
        "APIARY_CONTROL_PLANE_URL": cp_url,
        "APIARY_CP_ISSUER": cp_url,
        "APIARY_BOOTSTRAP_TOKEN": token,
        "APIARY_DATA_DIR": str(data_dir),
    }


@pytest.fixture
def shared_cp(tmp_path: Path, set_env: SetEnv) -> Iterator[tuple[ControlPlane, str]]:
    set_env({})
    settings = ApiarySettings(data_dir=tmp_path / "cp", federation_grpc_port=0)
    admin.bootstrap(settings, admin_email="admin@apiary.local", mint_key=False,
                    local_data_plane=False)
    cp = ControlPlane.open(settings)
    try:
        with served_control_plane(settings) as url:
            yield cp, url
    finally:
        cp.close()


def _token(cp: ControlPlane) -> tuple[str, str]:
    with cp.transaction() as db:
        plane, token = create_data_plane(db, name="eu-1", url="https://eu1.example.com",
                                         org_id=None, now=cp.now())
        return plane.id, token


def test_identity_registers_once_and_the_builders_find_it(
    shared_cp: tuple[ControlPlane, str], tmp_path: Path, set_env: SetEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cp, url = shared_cp
    dp_id, token = _token(cp)
    data_dir = tmp_path / "identity" / "apiary"
    set_env(_dp_env(url, data_dir, token))
    assert cluster.main(["identity"]) == 0
    assert dp_id in capsys.readouterr().out
    identity = json.loads((data_dir / "dp-identity.json").read_text())
    assert identity["data_plane_id"] == dp_id
    assert (data_dir / "dp-identity.key").stat().st_mode & 0o077 == 0
    with cp.transaction() as db:
        plane = db.get_one(DataPlane, dp_id)
        assert plane.status == "active"
        thumbprint = plane.key_thumbprint
    # Again (a restarted head): the identity is found; the token (now used) is not spent.
    assert cluster.main(["identity"]) == 0
    assert dp_id in capsys.readouterr().out
    # The builders of the data plane's applications find it too.
    for builder in (cluster.data_plane, cluster.pools):
        assert isinstance(builder({}), Application)
    with cp.transaction() as db:
        assert db.get_one(DataPlane, dp_id).key_thumbprint == thumbprint


def test_a_used_token_without_an_identity_is_refused_with_the_reason(
    shared_cp: tuple[ControlPlane, str], tmp_path: Path, set_env: SetEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cp, url = shared_cp
    _, token = _token(cp)
    set_env(_dp_env(url, tmp_path / "first" / "apiary", token))
    assert cluster.main(["identity"]) == 0
    capsys.readouterr()
    set_env(_dp_env(url, tmp_path / "second" / "apiary", token))  # another volume
    assert cluster.main(["identity"]) == 2
    err = capsys.readouterr().err
    assert "already used" in err
    assert "apiary data-planes create" in err
    assert not (tmp_path / "second" / "apiary" / "dp-identity.json").exists()
    with pytest.raises(ConfigurationError, match="already used"):
        cluster.data_plane({})


def test_an_unreachable_control_plane_is_retryable(
    tmp_path: Path, set_env: SetEnv, capsys: pytest.CaptureFixture[str],
) -> None:
    set_env(_dp_env(f"http://127.0.0.1:{free_port()}/cp", tmp_path / "apiary",
                    "apiary_dpb_" + "z" * 43))
    assert cluster.main(["identity"]) == 1
    assert "could not reach the control plane" in capsys.readouterr().err


def test_identity_refuses_a_configuration_that_is_no_data_plane_cluster(
    tmp_path: Path, set_env: SetEnv, capsys: pytest.CaptureFixture[str],
) -> None:
    env = _dp_env("https://cp.example.com/cp", tmp_path / "apiary", "apiary_dpb_x")
    env["APIARY_CP_ENVELOPE_KEY"] = base64.urlsafe_b64encode(b"k" * 32).decode()
    set_env(env)
    assert cluster.main(["identity"]) == 2
    assert "secret of the control plane" in capsys.readouterr().err
    assert not (tmp_path / "apiary").exists()  # nothing generated, nothing sent
