"""What ``apiary up`` prints when it is ready, per plane: a control-plane-only node names
its federation endpoint and says how to add a data plane; a federated data plane names its
id; ``apiary up``'s flags map onto the settings."""

from __future__ import annotations

from pathlib import Path

from apiary.cli import _control_ready_text, _ready_text, _settings_overrides, build_parser
from apiary.settings import ApiarySettings
from apiary.startup.node import Connection


def test_control_node_says_where_data_planes_dial_and_how_to_add_one(tmp_path: Path) -> None:
    connection = Connection("http://127.0.0.1:8787", "", "", "http://127.0.0.1:8787/cp",
                            "admin@apiary.local", None, plane="control",
                            federation_endpoint="cp.example.com:4320")
    text = _control_ready_text(connection, tmp_path)
    assert "federation:    cp.example.com:4320" in text
    assert "apiary data-planes create NAME --url" in text
    assert ("apiary up --plane data --control-plane http://127.0.0.1:8787/cp "
            "--bootstrap-token <token>") in text
    assert "API key" not in text  # a control-only node has no data plane to send to
    assert str(tmp_path / "connection.json") in text


def test_control_node_with_federation_off_says_so(tmp_path: Path) -> None:
    connection = Connection("http://h:1", "", "", "http://h:1/cp", None, plane="control")
    assert "off (APIARY_FEDERATION_GRPC_PORT is 0)" in _control_ready_text(connection, tmp_path)


def test_federated_data_node_names_its_id(tmp_path: Path) -> None:
    connection = Connection("http://127.0.0.1:9000", "", "", "https://cp.example.com/cp",
                            plane="data", data_plane_id="dp-0123456789abcdef")
    text = _ready_text(connection, ApiarySettings(data_dir=tmp_path))
    assert "data plane:    dp-0123456789abcdef" in text
    assert "(use a key of your control plane)" in text


def test_up_flags_map_onto_settings() -> None:
    args = build_parser().parse_args([
        "up", "--plane", "data", "--control-plane", "https://cp.example.com/cp",
        "--bootstrap-token", "apiary_dpb_abc"])
    overrides = _settings_overrides(args)
    assert overrides == {"plane": "data", "control_plane_url": "https://cp.example.com/cp",
                         "bootstrap_token": "apiary_dpb_abc"}
    settings = ApiarySettings(**overrides)  # type: ignore[arg-type]
    assert settings.bootstrap_token is not None
    assert settings.bootstrap_token.get_secret_value() == "apiary_dpb_abc"
    assert _settings_overrides(build_parser().parse_args(["up"])) == {}
