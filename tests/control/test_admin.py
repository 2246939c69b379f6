"""The administration functions and the ``apiary users|projects|keys|data-planes`` CLI."""

from __future__ import annotations

import argparse
import json

import pytest
from fastapi.testclient import TestClient

from apiary.control import ControlPlane, admin
from apiary.control.cli import add_control_commands
from apiary.errors import Conflict, NotFound

from ._tenants import auth, error_code, exchange, ok


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apiary")
    add_control_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_admin_bootstraps_a_tenant_whose_key_works(client: TestClient, cp: ControlPlane) -> None:
    user = admin.users_create(cp.settings, email="root@example.com")
    assert len(user["password"]) >= 20
    session = ok(client.post("/v1/auth/login", json={"email": "root@example.com",
                                                      "password": user["password"]}))
    client.cookies.clear()
    project = admin.projects_create(cp.settings, name="app", org="Acme",
                                    owner_email="root@example.com")
    again = admin.projects_create(cp.settings, name="api", org="Acme")
    assert again["workspace_id"] == project["workspace_id"]  # found, not created twice
    orgs = ok(client.get("/v1/orgs", headers=auth(session["session_token"])))
    assert [o["name"] for o in orgs] == ["Acme"]

    key = admin.keys_create(cp.settings, name="ingest", project_id=project["id"])
    assert key["api_key"].startswith(f"hh_ingst_{key['id']}_")
    listed = admin.keys_list(cp.settings, project_id=project["id"])["keys"]
    assert [k["id"] for k in listed] == [key["id"]]
    assert key["api_key"] not in json.dumps(listed)
    assert ok(exchange(client, key["api_key"]))["token_type"] == "Bearer"
    revoked = admin.keys_revoke(cp.settings, key_id=key["api_key"])
    assert revoked["revoked_at"] is not None
    assert error_code(exchange(client, key["api_key"]), 401) == "unauthenticated"
    with pytest.raises(NotFound):
        admin.keys_revoke(cp.settings, key_id="x" * 24)


def test_rotate_signing_publishes_the_next_key(client: TestClient, cp: ControlPlane) -> None:
    rotation = admin.keys_rotate_signing(cp.settings)
    states = {k["kid"]: k["state"] for k in rotation["keys"]}
    assert states[rotation["next_kid"]] == "next"
    assert sorted(states.values()) == ["active", "next"]
    jwks = [k["kid"] for k in ok(client.get("/.well-known/jwks.json"))["keys"]]
    assert rotation["next_kid"] in jwks
    with pytest.raises(Conflict):
        admin.keys_rotate_signing(cp.settings)


def test_data_planes_are_registered_once(cp: ControlPlane) -> None:
    plane = admin.data_planes_register(cp.settings, dp_id="eu-1", name="EU",
                                       url="https://eu.example/")
    assert plane["url"] == "https://eu.example"
    with pytest.raises(Conflict):
        admin.data_planes_register(cp.settings, dp_id="eu-1", name="EU", url="https://x")
    ids = [p["id"] for p in admin.data_planes_list(cp.settings)["data_planes"]]
    assert "eu-1" in ids


def test_cli_help_and_json_output(
    cp: ControlPlane, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _parser()
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["keys", "create", "--help"])
    assert exited.value.code == 0
    assert "--project-id" in capsys.readouterr().out

    settings = cp.settings
    assert settings.cp_envelope_key is not None
    monkeypatch.setenv("APIARY_CP_DATABASE_URL", settings.cp_database)
    monkeypatch.setenv("APIARY_CP_ENVELOPE_KEY", settings.cp_envelope_key.get_secret_value())

    def run(*argv: str) -> dict[str, object]:
        args = parser.parse_args([*argv, "--data-dir", str(settings.data_dir), "--json"])
        assert args.func(args) == 0
        result: dict[str, object] = json.loads(capsys.readouterr().out)
        return result

    created = run("projects", "create", "--name", "app", "--org", "CLI Org")
    key = run("keys", "create", "--project-id", str(created["id"]), "--permission",
              "events:write")
    assert key["permissions"] == ["events:write"]
    assert str(key["api_key"]).startswith("hh_ingst_")
    assert run("keys", "revoke", str(key["id"]))["revoked_at"] is not None
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("a very good password\n"))
    user = run("users", "create", "--email", "cli@example.com", "--password-stdin")
    assert "password" not in user  # given, so not echoed
    assert "next_kid" in run("keys", "rotate-signing")


def test_bootstrap_is_idempotent_and_its_key_works(client: TestClient, cp: ControlPlane) -> None:
    email = "admin@apiary.local"
    first = admin.bootstrap(cp.settings, admin_email=email, data_plane_id="dp-local",
                            data_plane_url="http://127.0.0.1:8787")
    second = admin.bootstrap(cp.settings, admin_email=email, data_plane_id="dp-local",
                             mint_key=False)
    assert "admin_password" in first
    assert "admin_password" not in second
    assert "key" not in second
    assert (second["org_id"], second["project"]["id"]) == (first["org_id"],
                                                            first["project"]["id"])
    token = ok(client.post("/v1/auth/token", json={"audience": "dp-local"},
                           headers=auth(first["key"]["api_key"])))["access_token"]
    assert token.count(".") == 2
    login = ok(client.post("/v1/auth/login", json={"email": "admin@apiary.local",
                                                    "password": first["admin_password"]}))
    client.cookies.clear()
    assert login["user"]["email"] == "admin@apiary.local"


def test_operator_accounts_are_verified_and_the_bootstrap_admin_approves_domains(
    client: TestClient, cp: ControlPlane
) -> None:
    first = admin.bootstrap(cp.settings, admin_email="admin@apiary.local", mint_key=False)
    created = admin.users_create(cp.settings, email="ops@example.com")
    for email, password in (("admin@apiary.local", first["admin_password"]),
                            ("ops@example.com", created["password"])):
        session = ok(client.post("/v1/auth/login", json={"email": email, "password": password}))
        client.cookies.clear()
        assert session["user"]["email_verified"] is True
    admin_session = ok(client.post("/v1/auth/login", json={
        "email": "admin@apiary.local", "password": first["admin_password"]}))["session_token"]
    client.cookies.clear()
    claim = ok(client.post(f"/v1/orgs/{first['org_id']}/domains",
                           json={"domain": "apiary.example"}, headers=auth(admin_session)), 201)
    assert admin.domains_list(cp.settings, pending_only=True)["domains"][0]["id"] == claim["id"]
    approved = ok(client.post(f"/v1/admin/domains/{claim['id']}/approve",
                              headers=auth(admin_session)))
    assert approved["approved"] is True
    assert admin.domains_list(cp.settings, pending_only=True)["domains"] == []


def test_cli_verify_link_and_domain_approval(
    client: TestClient, cp: ControlPlane, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ._tenants import make_tenant, signup

    settings = cp.settings
    assert settings.cp_envelope_key is not None
    monkeypatch.setenv("APIARY_CP_DATABASE_URL", settings.cp_database)
    monkeypatch.setenv("APIARY_CP_ENVELOPE_KEY", settings.cp_envelope_key.get_secret_value())
    monkeypatch.setenv("APIARY_CP_ISSUER", settings.cp_issuer_url)
    parser = _parser()

    def run(*argv: str) -> dict[str, object]:
        args = parser.parse_args([*argv, "--data-dir", str(settings.data_dir), "--json"])
        assert args.func(args) == 0
        result: dict[str, object] = json.loads(capsys.readouterr().out)
        return result

    session = signup(client, "newcomer@example.com", verify=False)
    printed = run("users", "verify-link", "newcomer@example.com")
    assert str(printed["link"]).startswith(f"{settings.cp_issuer_url}/verify-email?")
    assert str(printed["link"]).endswith(str(printed["token"]))
    ok(client.post("/v1/auth/email/verify", json={"token": printed["token"]}))
    assert ok(client.get("/v1/me", headers=auth(session)))["user"]["email_verified"] is True
    with pytest.raises(Conflict):
        run("users", "verify-link", "newcomer@example.com")  # already verified
    with pytest.raises(NotFound):
        run("users", "verify-link", "nobody@example.com")

    tenant = make_tenant(client, "Corp")
    claim = ok(client.post(f"/v1/orgs/{tenant.org_id}/domains", json={"domain": "corp.example"},
                           headers=auth(tenant.owner)), 201)
    listed = run("domains", "list", "--pending")
    assert [d["id"] for d in listed["domains"]] == [claim["id"]]  # type: ignore[index,union-attr]
    assert run("domains", "approve", claim["id"])["approved_at"] is not None
    promoted = run("users", "set-instance-admin", "newcomer@example.com")
    assert promoted["is_instance_admin"] is True
    # Another org cannot hold the same domain approved.
    other = make_tenant(client, "Other")
    second = ok(client.post(f"/v1/orgs/{other.org_id}/domains", json={"domain": "corp.example"},
                            headers=auth(other.owner)), 201)
    with pytest.raises(Conflict):
        run("domains", "approve", second["id"])
