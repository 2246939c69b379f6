"""``apiary up --plane control|data`` refuses a configuration that cannot work before anything
starts (no nats-server, no Ray, nothing in the data directory but its lock, released): a
data-only node without a control plane, or holding a control-plane secret; a control-only
node naming another control plane, or holding a data-plane secret; a bootstrap token on a
node that runs its own control plane; and a data plane whose registration fails (the
control plane unreachable, or refusing the token) fails ``apiary up`` with that reason."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import pytest
from _servers import free_port, http_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from apiary.errors import ApiaryError, ConfigurationError
from apiary.settings import ApiarySettings, plane_secrets
from apiary.startup.node import ApiaryNode

ENVELOPE_KEY = "q" * 43 + "="


def _nothing_started(data_dir: Path) -> None:
    """Only the lock file was made, and it is free again (another start may take it)."""
    assert not (data_dir / "nats").exists()
    assert not (data_dir / "clickhouse").exists()
    assert not (data_dir / "state.json").exists()
    assert not (data_dir / "cp.sqlite").exists()
    lock = data_dir / "apiary.lock"
    if lock.exists():
        with lock.open("w") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held


def _start(tmp_path: Path, **settings: Any) -> ApiaryNode:
    node = ApiaryNode(ApiarySettings(data_dir=tmp_path, port=free_port(), **settings))
    node.start()
    return node


def test_data_plane_without_a_control_plane_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="--control-plane URL"):
        _start(tmp_path, plane="data")
    _nothing_started(tmp_path)


def test_data_plane_naming_its_own_cp_path_is_refused(tmp_path: Path) -> None:
    """Nothing serves <base URL>/cp on a data-only node."""
    port = free_port()
    settings = ApiarySettings(data_dir=tmp_path, port=port, plane="data",
                              control_plane_url=f"http://127.0.0.1:{port}/cp")
    with pytest.raises(ConfigurationError, match="--control-plane URL"):
        ApiaryNode(settings).start()
    _nothing_started(tmp_path)


@pytest.mark.parametrize("secret", plane_secrets("control"))
def test_data_plane_holding_a_control_plane_secret_is_refused(tmp_path: Path, secret: str
                                                              ) -> None:
    value = {"cp_database_url": "postgresql+psycopg://cp:pw@pg/cpdb",
             "cp_envelope_key": ENVELOPE_KEY, "smtp_url": "smtp://mail:25"}[secret]
    with pytest.raises(ConfigurationError, match=f"APIARY_{secret.upper()}") as refused:
        _start(tmp_path, plane="data", control_plane_url="http://cp.example:8787/cp",
               **{secret: value})
    assert "secret of the control plane" in refused.value.message
    _nothing_started(tmp_path)


def test_control_plane_holding_a_data_plane_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as refused:
        _start(tmp_path, plane="control", nats_url="nats://dp:pw@nats:4222",
               dp_envelope_key=ENVELOPE_KEY)
    assert "APIARY_NATS_URL" in refused.value.message
    assert "APIARY_DP_ENVELOPE_KEY" in refused.value.message
    assert "secret of the data plane" in refused.value.message
    _nothing_started(tmp_path)


def test_control_plane_naming_another_control_plane_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unset it"):
        _start(tmp_path, plane="control", control_plane_url="http://cp.example:8787/cp")
    _nothing_started(tmp_path)


def test_bootstrap_token_with_the_embedded_control_plane_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="--plane data"):
        _start(tmp_path, bootstrap_token="apiary_dpb_" + "x" * 43)
    _nothing_started(tmp_path)


def test_every_plane_secret_is_checked_for_the_other_plane() -> None:
    """The refusal reads the settings models' marks: both planes have secrets to refuse."""
    assert {"cp_database_url", "cp_envelope_key"} <= set(plane_secrets("control"))
    assert {"nats_url", "dp_envelope_key", "bootstrap_token"} <= set(plane_secrets("data"))


def test_data_plane_whose_control_plane_is_unreachable_fails_with_nothing_started(
    tmp_path: Path,
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/cp"
    with pytest.raises(ApiaryError, match="could not reach the control plane") as failed:
        _start(tmp_path, plane="data", control_plane_url=unreachable,
               bootstrap_token="apiary_dpb_" + "x" * 43)
    assert failed.value.retryable
    _nothing_started(tmp_path)
    assert not (tmp_path / "dp-identity.json").exists()


def test_data_plane_whose_token_is_refused_fails_with_the_control_planes_reason(
    tmp_path: Path,
) -> None:
    """A used token: the control plane answers 410 (the federation contract), and `apiary up`
    fails with that reason and nothing running."""
    seen: list[dict[str, Any]] = []

    async def register(request: Request) -> JSONResponse:
        seen.append(await request.json())
        return JSONResponse({"message": "this bootstrap token was already used; create a new "
                             "one with `apiary data-planes create`", "errorCode": "gone"},
                            status_code=410)

    app = Starlette(routes=[Route("/cp/v1/data-planes/register", register, methods=["POST"])])
    with http_server(app) as url, pytest.raises(ConfigurationError,
                                                 match="already used") as refused:
        _start(tmp_path, plane="data", control_plane_url=f"{url}/cp",
               bootstrap_token="apiary_dpb_" + "u" * 43)
    assert "apiary data-planes create" in refused.value.message
    [body] = seen
    assert body["bootstrap_token"] == "apiary_dpb_" + "u" * 43
    assert set(body["public_jwk"]) == {"kty", "crv", "x", "y"}  # the public half only
    _nothing_started(tmp_path)
    assert not (tmp_path / "dp-identity.json").exists()
    assert os.stat(tmp_path / "dp-identity.key").st_mode & 0o077 == 0
