"""Each setting belongs to one plane's model (or both), reads ``APIARY_<FIELD>``, and the
cluster checks read their secret and required lists from the models."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from pydantic import SecretStr

from apiary.settings import (
    ApiarySettings,
    CommonSettings,
    ControlPlaneSettings,
    DataPlaneSettings,
    cluster_required,
    load_settings,
    owner_of,
    plane_secrets,
)

FIELDS = ApiarySettings.model_fields


def test_the_flat_model_is_the_union_of_the_plane_models() -> None:
    control, data = set(ControlPlaneSettings.model_fields), set(DataPlaneSettings.model_fields)
    common = set(CommonSettings.model_fields)
    assert set(FIELDS) == control | data
    assert control & data == common
    assert len(FIELDS) >= 90


def test_every_setting_has_one_owner_and_cp_settings_are_the_control_planes() -> None:
    owners = {name: owner_of(name) for name in FIELDS}
    for name, owner in owners.items():
        if name.startswith(("cp_", "smtp_")):
            assert owner == "control", name
        elif name.startswith(("dp_", "nats_", "clickhouse_", "writer_", "evaluator_",
                              "sandbox_", "ingest_", "review_", "jwks_", "auth_")):
            assert owner == "data", name
    assert owners["redis_url"] == owners["data_dir"] == owners["outbound_allowlist"] == "common"
    with pytest.raises(KeyError):
        owner_of("no_such_setting")


@pytest.mark.parametrize(
    ("env", "field", "raw", "value"),
    [
        ("APIARY_PORT", "port", "9999", 9999),
        ("APIARY_CP_TOKEN_TTL_S", "cp_token_ttl_s", "600", 600),
        ("APIARY_NATS_URL", "nats_url", "nats://q:4222", "nats://q:4222"),
        ("APIARY_SANDBOX_ALLOW_DEGRADED_ISOLATION", "sandbox_allow_degraded_isolation", "true",
         True),
        ("APIARY_OUTBOUND_ALLOWLIST", "outbound_allowlist", "a.example, 10.0.0.0/8",
         ("a.example", "10.0.0.0/8")),
        ("APIARY_CP_TRUSTED_PROXIES", "cp_trusted_proxies", "10.1.2.3", ("10.1.2.3/32",)),
    ],
)
def test_each_field_reads_apiary_field_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: str, field: str, raw: str, value: object
) -> None:
    monkeypatch.setenv(env, raw)
    assert getattr(load_settings(), field) == value
    # The plane model that declares the field reads the same variable.
    model = {"common": CommonSettings, "control": ControlPlaneSettings,
             "data": DataPlaneSettings}[owner_of(field)]
    assert getattr(model(), field) == value


def test_a_plane_model_ignores_the_other_planes_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("APIARY_CP_TOKEN_TTL_S", "600")
    monkeypatch.setenv("APIARY_WRITER_COUNT", "3")
    data = DataPlaneSettings(data_dir=tmp_path)
    assert data.writer_count == 3
    assert not hasattr(data, "cp_token_ttl_s")
    assert ControlPlaneSettings(data_dir=tmp_path).cp_token_ttl_s == 600


def test_settings_are_frozen_and_picklable(tmp_path: Path) -> None:
    settings = ApiarySettings(data_dir=tmp_path, cp_envelope_key=SecretStr("k"))
    assert pickle.loads(pickle.dumps(settings)) == settings
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]


def test_derived_values_of_both_planes(tmp_path: Path) -> None:
    settings = ApiarySettings(data_dir=tmp_path, host="0.0.0.0", port=9000)
    assert settings.base_url == "http://127.0.0.1:9000"
    assert settings.cp_issuer_url == "http://127.0.0.1:9000/cp"
    assert settings.judge_url == "http://127.0.0.1:9000/v1"
    assert settings.cp_database == f"sqlite:///{tmp_path / 'cp.sqlite'}"
    assert settings.dp_database == f"sqlite:///{tmp_path / 'dp.sqlite'}"
    assert settings.embedded_nats
    assert settings.embedded_clickhouse
    assert settings.trusted_issuer is None
    trusting = ApiarySettings(data_dir=tmp_path, control_plane_url="https://cp.example/")
    assert trusting.trusted_issuer == "https://cp.example"


def test_plane_secrets_come_from_the_models() -> None:
    assert set(plane_secrets("control")) == {"cp_database_url", "cp_envelope_key", "smtp_url"}
    assert set(plane_secrets("data")) == {"dp_database_url", "dp_envelope_key", "nats_url",
                                          "clickhouse_url", "evaluator_judge_api_key",
                                          "admin_token", "jetstream_key", "bootstrap_token",
                                          "notify_smtp_url"}
    # Every SecretStr is some plane's secret, and a secret is never both planes'.
    secret_str = {name for name, field in FIELDS.items() if "SecretStr" in str(field.annotation)}
    assert secret_str <= set(plane_secrets("control")) | set(plane_secrets("data"))
    assert not set(plane_secrets("control")) & set(CommonSettings.model_fields)
    assert not set(plane_secrets("data")) & set(CommonSettings.model_fields)


def test_cluster_required_settings_come_from_the_models() -> None:
    assert set(cluster_required("data")) == {
        "nats_url", "clickhouse_url", "dp_database_url", "dp_envelope_key", "object_store_url",
        "redis_url", "control_plane_url"}
    assert set(cluster_required("control")) == {
        "cp_database_url", "cp_envelope_key", "cp_issuer", "redis_url"}


def test_the_cluster_checks_use_the_model_lists() -> None:
    from apiary.startup import plane_checks

    for plane in plane_checks.PLANES:
        assert plane_checks.PLANE_SECRETS[plane] == plane_secrets(plane)
        assert plane_checks.REQUIRED[plane] == cluster_required(plane)


def test_alert_interval_is_at_least_five_seconds_with_a_fix(tmp_path: Path) -> None:
    assert ApiarySettings(data_dir=tmp_path).alert_interval_s == 60
    assert ApiarySettings(data_dir=tmp_path, alert_interval_s=5).alert_interval_s == 5
    with pytest.raises(ValueError, match=r"set APIARY_ALERT_INTERVAL_S=5 or more"):
        ApiarySettings(data_dir=tmp_path, alert_interval_s=4)
