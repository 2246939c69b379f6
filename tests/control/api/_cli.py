"""The ``apiary`` command's control-plane subcommands, parsed as the CLI parses them, pointed
at a test's control plane through the environment (as an operator's shell would be)."""

from __future__ import annotations

import argparse

import pytest

from apiary.control import ControlPlane


def control_cli(cp: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser of ``apiary``'s control commands, with ``cp``'s database, envelope key and
    issuer in the environment (``monkeypatch`` undoes it after the test)."""
    from apiary.control.cli import add_control_commands

    settings = cp.settings
    assert settings.cp_envelope_key is not None
    monkeypatch.setenv("APIARY_CP_DATABASE_URL", settings.cp_database)
    monkeypatch.setenv("APIARY_CP_ENVELOPE_KEY", settings.cp_envelope_key.get_secret_value())
    monkeypatch.setenv("APIARY_CP_ISSUER", settings.cp_issuer_url)
    parser = argparse.ArgumentParser(prog="apiary")
    add_control_commands(parser.add_subparsers(dest="command", required=True))
    return parser
