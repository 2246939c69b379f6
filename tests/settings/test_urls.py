"""One table-driven check for every URL setting: schemes accepted, a message saying how to
fix a bad value, trailing slashes stripped where code appends paths."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from apiary.errors import ConfigurationError
from apiary.settings import URL_RULES, ApiarySettings, load_settings


def _value(field: str, url: str) -> object:
    return SecretStr(url) if "SecretStr" in str(ApiarySettings.model_fields[field].annotation) \
        else url


def _plain(value: object) -> object:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def test_every_url_setting_is_in_the_table() -> None:
    urls = {name for name in ApiarySettings.model_fields if name.endswith("_url")}
    assert set(URL_RULES) <= urls
    # Only the S3 endpoint is free-form (boto3 checks it).
    assert urls - set(URL_RULES) == {"s3_endpoint_url"}


@pytest.mark.parametrize("field", sorted(URL_RULES))
def test_each_accepted_scheme_passes(field: str) -> None:
    for scheme in URL_RULES[field].schemes:
        url = f"{scheme}host.example/x"
        settings = load_settings(**{field: _value(field, url)})
        assert _plain(getattr(settings, field)) == url


@pytest.mark.parametrize("field", sorted(URL_RULES))
def test_a_bad_scheme_is_refused_saying_how_to_fix_it(field: str) -> None:
    rule = URL_RULES[field]
    env = f"APIARY_{field.upper()}"
    with pytest.raises(ConfigurationError) as caught:
        load_settings(**{field: _value(field, "ftp://host.example/")})
    message = str(caught.value)
    assert f"{field} (env {env})" in message
    assert f"must be {rule.what}; unset {env} {rule.instead}" in message
    assert "python -m apiary.settings" in message


def test_the_messages_are_the_ones_operators_know() -> None:
    with pytest.raises(ConfigurationError, match=(
            "must be an http:// or https:// URL of a ClickHouse server; "
            "unset APIARY_CLICKHOUSE_URL to use embedded chDB")):
        load_settings(clickhouse_url="tcp://ch:9000")
    with pytest.raises(ConfigurationError, match=(
            "must be an smtp://, smtp\\+starttls:// or smtps:// URL; unset APIARY_SMTP_URL")):
        load_settings(smtp_url="mailto:x@example.com")


@pytest.mark.parametrize("field", sorted(URL_RULES))
def test_trailing_slashes_are_stripped_only_where_the_rule_says(field: str) -> None:
    scheme = URL_RULES[field].schemes[0]
    url = f"{scheme}host.example/base/"
    stored = _plain(getattr(load_settings(**{field: _value(field, url)}), field))
    assert stored == (url.rstrip("/") if URL_RULES[field].strip_slash else url)
    assert URL_RULES["control_plane_url"].strip_slash
    assert URL_RULES["evaluator_judge_url"].strip_slash


def test_a_bad_url_in_the_environment_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APIARY_NATS_URL", "http://nats:4222")
    with pytest.raises(ConfigurationError,
                       match="unset APIARY_NATS_URL to start an embedded nats-server"):
        load_settings()
