"""Help text is generated from each field: its description, its default, its variable;
``--help``, ``python -m apiary.settings`` and docs/configuration.md all show it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from apiary.errors import ConfigurationError
from apiary.settings import (
    ApiarySettings,
    default_text,
    env_var,
    field_help,
    flag_help,
    load_settings,
    settings_reference,
)
from apiary.settings.__main__ import main

FIELDS = ApiarySettings.model_fields
DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_every_field_has_a_description_that_does_not_repeat_default_or_variable(
    name: str,
) -> None:
    description = FIELDS[name].description
    assert description, name
    assert description.strip().endswith((".", ")")), name
    assert not re.search(r"\bDefault\b", description), name
    assert env_var(name) not in description, name


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_the_rendered_help_names_the_default_and_the_variable(name: str) -> None:
    text = field_help(name)
    assert text.startswith(FIELDS[name].description or "?")
    assert text.endswith(f" Default {default_text(name)}. Env APIARY_{name.upper()}.")
    assert default_text(name)
    assert flag_help(name) == f"env APIARY_{name.upper()}, default {default_text(name)}"


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("port", "8787"),
        ("data_dir", "~/.apiary"),
        ("nats_url", "unset"),
        ("outbound_allowlist", "empty"),
        ("cp_signup_enabled", "true"),
        ("sandbox_allow_degraded_isolation", "false"),
        ("clickhouse_database", "'apiary'"),
        ("log_level", "INFO"),
        ("cp_token_ttl_s", "300 s (5 min)"),
        ("cp_session_ttl_s", "604800 s (7 days)"),
        ("writer_flush_interval_s", "0.5 s"),
        ("ingest_rate_limit_per_s", "1000"),
        ("ingest_max_body_bytes", "16 MiB"),
        ("events_stream_max_bytes", "8 GiB"),
        ("sandbox_memory_mb", "512 MiB"),
        ("cp_max_concurrent_password_hashes", "2 x CPUs, at most 8"),
    ],
)
def test_defaults_read_as_an_operator_would_write_them(name: str, default: str) -> None:
    assert default_text(name) == default


def test_the_reference_lists_every_setting_by_plane() -> None:
    text = settings_reference()
    for name in FIELDS:
        assert f"  {env_var(name)} (default {default_text(name)})" in text
    assert text.index("Both planes:") < text.index("Control plane:") < text.index("Data plane:")
    assert text.index("APIARY_CP_TOKEN_TTL_S") < text.index("Data plane:")
    assert text.index("APIARY_NATS_URL") > text.index("Data plane:")


def test_docs_configuration_is_the_generated_reference() -> None:
    """Regenerate with ``python -m apiary.settings --markdown > docs/configuration.md``."""
    assert DOCS.read_text() == settings_reference(markdown=True)
    for name in FIELDS:
        assert f"| `{env_var(name)}` | {default_text(name)} |" in DOCS.read_text()


def test_python_m_apiary_settings_prints_the_reference(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out == settings_reference()
    assert main(["--markdown"]) == 0
    assert capsys.readouterr().out == settings_reference(markdown=True)


def test_command_line_flags_show_the_generated_default_and_variable() -> None:
    from apiary.cli import build_parser

    parser = build_parser()
    up = parser._subparsers._group_actions[0].choices["up"]  # type: ignore[union-attr]
    helps = {action.dest: action.help for action in up._actions}
    assert helps["port"] == f"HTTP port ({flag_help('port')})"
    assert helps["data_dir"] == f"data directory ({flag_help('data_dir')})"
    assert "python -m apiary.settings" in (up.epilog or "")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"port": 70000}, "port (env APIARY_PORT): Input should be less than or equal to 65535"),
        ({"cp_token_ttl_s": 5},
         "cp_token_ttl_s (env APIARY_CP_TOKEN_TTL_S): Input should be greater than or equal"),
        ({"clickhouse_database": "a-b"}, "clickhouse_database (env APIARY_CLICKHOUSE_DATABASE)"),
        ({"outbound_allowlist": "10.0.0.0/99"}, "is neither a host name nor an IP network"),
        ({"no_such_setting": 1}, "no_such_setting (env APIARY_NO_SUCH_SETTING): Extra inputs"),
    ],
)
def test_start_up_validation_names_the_variable_and_the_constraint(
    overrides: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(**overrides)
    assert str(caught.value).startswith("invalid Apiary configuration: ")
    assert expected in str(caught.value)


def test_every_problem_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APIARY_PORT", "0")
    monkeypatch.setenv("APIARY_REDIS_URL", "http://redis")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "APIARY_PORT" in str(caught.value)
    assert "APIARY_REDIS_URL" in str(caught.value)
