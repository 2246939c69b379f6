"""An org's notification channels at the control plane: CRUD, RBAC, tenant isolation,
secrets never returned, never logged and never in cpdb in the clear, the outbound-URL
policy at write time, and the config-log entries that push channels and tests to the data
planes serving the org."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from apiary.control import ControlPlane
from apiary.control.db import ConfigChange
from apiary.control.federation import entries_for, wire_payload

from .._tenants import Tenant, add_member, auth, error_code, make_tenant, ok
from ..federation._keys import create_and_register, installation_admin

SLACK = "https://hooks.slack.test/services/T000/B000/slack-secret-path"
HOOK = "https://receiver.example.test/hooks/webhook-secret-path"
SMTP = "smtp+starttls://mailer:smtp-password-123@smtp.example.test:587"
SIGNING = "s" * 24 + "signing-secret"
SECRETS = ("slack-secret-path", "webhook-secret-path", "smtp-password-123", "signing-secret")


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # Host names allow-listed: accepted without DNS (the policy's documented escape hatch).
    return {"outbound_allowlist": ["hooks.slack.test", "receiver.example.test",
                                   "smtp.example.test"]}


def _url(t: Tenant, channel_id: str | None = None) -> str:
    base = f"/v1/orgs/{t.org_id}/notification-channels"
    return base if channel_id is None else f"{base}/{channel_id}"


def _create_three(client: TestClient, t: Tenant) -> dict[str, dict[str, Any]]:
    h = auth(t.owner)
    return {
        "slack": ok(client.post(_url(t), headers=h, json={
            "name": "ops slack", "type": "slack", "config": {"webhook_url": SLACK},
            "severities": ["critical"]}), 201),
        "webhook": ok(client.post(_url(t), headers=h, json={
            "name": "pager", "type": "webhook", "config": {"url": HOOK},
            "scope": {"project_id": t.project_id}}), 201),
        "email": ok(client.post(_url(t), headers=h, json={
            "name": "mail", "type": "email",
            "config": {"recipients": ["oncall@acme.example"], "smtp_url": SMTP},
            "scope": {"workspace_id": t.workspace_id},
            "severities": ["warning", "resolution"]}), 201),
    }


def _no_secret(text_: str) -> None:
    for secret in SECRETS:
        assert secret not in text_, secret


def test_crud_shows_hints_never_secrets(client: TestClient, caplog: pytest.LogCaptureFixture,
                                        cp: ControlPlane) -> None:
    caplog.set_level(logging.DEBUG)
    t = make_tenant(client, "Acme")
    h = auth(t.owner)
    made = _create_three(client, t)
    hook = made["webhook"]
    generated = hook["signing_secret"]
    assert generated.startswith("whsec_")
    assert len(generated) > 30
    assert hook["config"] == {"url_hint": "…test", "has_secret": True}
    assert hook["scope"] == {"project_id": t.project_id}
    assert made["slack"]["config"] == {"webhook_url_hint": "…test"}
    assert made["slack"]["signing_secret"] is None
    assert made["slack"]["scope"] == {"org": True}
    assert made["email"]["config"] == {"recipients": ["oncall@acme.example"],
                                       "smtp_url_hint": "…test"}
    assert made["email"]["severities"] == ["resolution", "warning"]

    listed = client.get(_url(t), headers=h)
    assert [c["name"] for c in ok(listed)] == ["mail", "ops slack", "pager"]
    one = client.get(_url(t, hook["id"]), headers=h)
    assert "signing_secret" not in ok(one)
    patched = client.patch(_url(t, hook["id"]), headers=h, json={
        "name": "pager 2", "severities": ["critical"], "enabled": False,
        "config": {"url": HOOK + "/v2"}})
    body = ok(patched)
    assert (body["name"], body["severities"], body["enabled"]) == ("pager 2", ["critical"], False)
    for response in (listed, one, patched):
        _no_secret(response.text)
        assert generated not in response.text
    logged = caplog.text + repr([r.__dict__ for r in caplog.records])  # with the extras
    assert "notification channel created" in logged
    _no_secret(logged)
    assert generated not in logged

    # The update kept the generated secret (left out of the new config).
    with cp.transaction() as db:
        from apiary.control.config import notifications
        from apiary.control.db import NotificationChannel
        row = db.get(NotificationChannel, hook["id"])
        assert row is not None
        assert notifications.open_secrets(cp, row) == {"url": HOOK + "/v2", "secret": generated}

    ok(client.delete(_url(t, hook["id"]), headers=h), 204)
    assert error_code(client.get(_url(t, hook["id"]), headers=h), 404) == "not_found"
    assert error_code(client.post(_url(t), headers=h, json={
        "name": "ops slack", "type": "slack", "config": {"webhook_url": SLACK}}),
        409) == "conflict"


def test_secrets_are_encrypted_in_cpdb_rows_and_log(client: TestClient,
                                                     cp: ControlPlane) -> None:
    t = make_tenant(client, "Acme")
    ok(client.post(_url(t), headers=auth(t.owner), json={
        "name": "signed", "type": "webhook", "config": {"url": HOOK, "secret": SIGNING}}), 201)
    _create_three(client, t)
    with cp.database.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM notification_channels")).all()
        log_rows = connection.execute(text("SELECT * FROM config_changes")).all()
    assert len(rows) == 4
    raw = repr(rows) + repr(log_rows)
    _no_secret(raw)
    assert "hooks.slack.test" not in raw
    assert "receiver.example.test" not in raw
    assert all(str(r.secrets_ciphertext).startswith("v1:") for r in rows)


def test_rbac_owners_and_admins_manage_members_only_list(client: TestClient) -> None:
    t = make_tenant(client, "Acme")
    admin = add_member(client, t, "admin@acme.example", "admin")
    member = add_member(client, t, "member@acme.example", "member")
    created = ok(client.post(_url(t), headers=auth(admin), json={
        "name": "admin's", "type": "slack", "config": {"webhook_url": SLACK}}), 201)
    listed = client.get(_url(t), headers=auth(member))
    assert [c["id"] for c in ok(listed)] == [created["id"]]
    _no_secret(listed.text)
    assert ok(client.get(_url(t, created["id"]), headers=auth(member)))["name"] == "admin's"
    slack = {"name": "x", "type": "slack", "config": {"webhook_url": SLACK}}
    assert error_code(client.post(_url(t), headers=auth(member), json=slack), 403) == "forbidden"
    assert error_code(client.patch(_url(t, created["id"]), headers=auth(member),
                                   json={"name": "y"}), 403) == "forbidden"
    assert error_code(client.delete(_url(t, created["id"]), headers=auth(member)),
                      403) == "forbidden"
    assert error_code(client.post(_url(t, created["id"]) + "/test", headers=auth(member)),
                      403) == "forbidden"
    assert error_code(client.get(_url(t)), 401) == "unauthenticated"


def test_tenant_isolation(client: TestClient) -> None:
    a, b = make_tenant(client, "Acme"), make_tenant(client, "Bolt")
    mine = ok(client.post(_url(a), headers=auth(a.owner), json={
        "name": "a", "type": "slack", "config": {"webhook_url": SLACK}}), 201)
    # B's owner cannot see or touch A's channels, nor reach them through B's org path.
    # (an org one is not a member of does not exist for one)
    assert error_code(client.get(_url(a), headers=auth(b.owner)), 404) == "not_found"
    assert error_code(client.get(_url(b, mine["id"]), headers=auth(b.owner)),
                      404) == "not_found"
    assert error_code(client.patch(_url(b, mine["id"]), headers=auth(b.owner),
                                   json={"name": "mine now"}), 404) == "not_found"
    assert error_code(client.delete(_url(b, mine["id"]), headers=auth(b.owner)),
                      404) == "not_found"
    assert ok(client.get(_url(b), headers=auth(b.owner))) == []
    # A scope must lie inside the channel's own org.
    for scope, field in (({"project_id": a.project_id}, "scope.project_id"),
                         ({"workspace_id": a.workspace_id}, "scope.workspace_id")):
        response = client.post(_url(b), headers=auth(b.owner), json={
            "name": "steal", "type": "slack", "config": {"webhook_url": SLACK},
            "scope": scope})
        assert error_code(response, 400) == "invalid_request"
        assert response.json()["details"]["field"] == field


@pytest.mark.parametrize(("kind", "config", "field", "reason"), [
    ("slack", {"webhook_url": "https://127.0.0.1/services/x"}, "config.webhook_url",
     "loopback"),
    ("webhook", {"url": "http://93.184.216.34/hook"}, "config.url", "http_not_allowed"),
    ("webhook", {"url": "https://169.254.169.254/latest"}, "config.url", "link_local"),
    ("email", {"recipients": ["a@b.example"],
               "smtp_url": "smtp://user:pw-secret@10.1.2.3:25"}, "config.smtp_url", "private"),
])
def test_outbound_policy_refuses_at_write_time(client: TestClient, kind: str,
                                               config: dict[str, Any], field: str,
                                               reason: str) -> None:
    t = make_tenant(client, "Acme")
    response = client.post(_url(t), headers=auth(t.owner),
                           json={"name": "bad", "type": kind, "config": config})
    assert error_code(response, 400) == "outbound_url_refused"
    details = response.json()["details"]
    assert details["field"] == field
    assert reason in response.text or details.get("reason") == reason
    assert "pw-secret" not in response.text


@pytest.mark.parametrize(("body", "field"), [
    ({"type": "email", "config": {"recipients": ["not-an-address"]}}, "config.recipients"),
    ({"type": "email", "config": {"recipients": ["a@b.example"],
                                  "smtp_url": "https://smtp.example.test"}}, "config.smtp_url"),
    ({"type": "slack", "config": {"url": SLACK}}, "config.url"),
    ({"type": "webhook", "config": {"url": HOOK, "secret": "short"}}, "config.secret"),
])
def test_invalid_configs_name_their_field(client: TestClient, body: dict[str, Any],
                                          field: str) -> None:
    t = make_tenant(client, "Acme")
    response = client.post(_url(t), headers=auth(t.owner), json={"name": "bad", **body})
    assert error_code(response, 400) == "invalid_request"
    assert response.json()["details"]["field"] == field


def test_a_channel_is_pushed_to_the_data_planes_of_its_org_with_its_secrets(
        client: TestClient, cp: ControlPlane) -> None:
    root = installation_admin(client)
    one = create_and_register(client, root, "one")
    two = create_and_register(client, root, "two")
    a, b = make_tenant(client, "Acme"), make_tenant(client, "Bolt")
    ok(client.put(f"/v1/projects/{a.project_id}/data-plane",
                  json={"data_plane_id": one.id}, headers=auth(a.owner)))
    ok(client.put(f"/v1/projects/{b.project_id}/data-plane",
                  json={"data_plane_id": two.id}, headers=auth(b.owner)))
    made = ok(client.post(_url(a), headers=auth(a.owner), json={
        "name": "signed", "type": "webhook", "config": {"url": HOOK, "secret": SIGNING},
        "scope": {"project_id": a.project_id}, "severities": ["critical", "warning"]}), 201)

    def channel_entries(dp: str) -> list[ConfigChange]:
        with cp.transaction() as db:
            found = [c for c in entries_for(db, dp, 0) if c.kind == "notification_channel"]
            for c in found:
                db.expunge(c)
            return found

    sent = channel_entries(one.id)
    assert [(c.object_id, c.deleted) for c in sent] == [(made["id"], False)]
    assert channel_entries(two.id) == []  # another org's data plane hears nothing
    _no_secret(repr(sent[0].payload))  # encrypted in the log ...
    wire = wire_payload(sent[0], cp.envelope)  # ... opened into the message sent
    assert wire == {
        "id": made["id"], "org_id": a.org_id, "name": "signed", "type": "webhook",
        "scope": {"type": "project", "id": a.project_id},
        "severities": ["critical", "warning"], "enabled": True,
        "config": {"url": HOOK, "secret": SIGNING}}

    # A data plane assigned a project of the org later gets the org's channels replayed.
    three = create_and_register(client, root, "three")
    ok(client.put(f"/v1/projects/{a.project_id}/data-plane",
                  json={"data_plane_id": three.id}, headers=auth(a.owner)))
    assert [c.object_id for c in channel_entries(three.id)] == [made["id"]]

    ok(client.delete(_url(a, made["id"]), headers=auth(a.owner)), 204)
    deleted = channel_entries(three.id)[-1]
    assert deleted.deleted
    assert deleted.payload == {"id": made["id"], "org_id": a.org_id}


def test_test_goes_to_one_data_plane_serving_the_scope(client: TestClient,
                                                       cp: ControlPlane) -> None:
    root = installation_admin(client)
    one = create_and_register(client, root, "one")
    t = make_tenant(client, "Acme")
    made = ok(client.post(_url(t), headers=auth(t.owner), json={
        "name": "s", "type": "slack", "config": {"webhook_url": SLACK}}), 201)
    # Nothing serves the org's projects yet: nobody could send it.
    refused = client.post(_url(t, made["id"]) + "/test", headers=auth(t.owner))
    assert error_code(refused, 409) == "conflict"
    ok(client.put(f"/v1/projects/{t.project_id}/data-plane",
                  json={"data_plane_id": one.id}, headers=auth(t.owner)))
    accepted = ok(client.post(_url(t, made["id"]) + "/test", headers=auth(t.owner)), 202)
    assert accepted["data_plane_id"] == one.id
    assert accepted["project_id"] == t.project_id
    with cp.transaction() as db:
        tests = [c for c in entries_for(db, one.id, 0) if c.kind == "notification_test"]
        assert len(tests) == 1
        payload = dict(tests[0].payload or {})
        latest = db.scalar(select(ConfigChange.version).order_by(
            ConfigChange.version.desc()).limit(1))
        # Never replayed: a later assignment of the project does not send it again.
        assert tests[0].version == latest
    assert payload["test_id"] == accepted["test_id"]
    assert (payload["channel_id"], payload["org_id"], payload["project_id"]) == (
        made["id"], t.org_id, t.project_id)


def test_test_endpoint_cannot_be_aimed_at_another_orgs_channel(client: TestClient,
                                                               cp: ControlPlane) -> None:
    root = installation_admin(client)
    one = create_and_register(client, root, "one")
    a, b = make_tenant(client, "Acme"), make_tenant(client, "Bolt")
    for t in (a, b):
        ok(client.put(f"/v1/projects/{t.project_id}/data-plane",
                      json={"data_plane_id": one.id}, headers=auth(t.owner)))
    theirs = ok(client.post(_url(a), headers=auth(a.owner), json={
        "name": "s", "type": "slack", "config": {"webhook_url": SLACK}}), 201)
    # Through B's own org path (where B's owner may manage channels) and through A's.
    for path in (_url(b, theirs["id"]), _url(a, theirs["id"])):
        response = client.post(path + "/test", headers=auth(b.owner))
        assert error_code(response, 404) == "not_found", path
    with cp.transaction() as db:
        assert [c for c in entries_for(db, one.id, 0) if c.kind == "notification_test"] == []


@pytest.mark.parametrize("config", [
    {"type": "slack", "config": {"url": SLACK}},
    {"type": "email", "config": {"recipients": ["a@b.example"],
                                 "smtp_url": "https://u:smtp-password-123@smtp.example.test"}},
    {"type": "webhook", "config": {"url": HOOK, "secret": "signing-secret"}},
    {"type": "webhook", "config": {"url": "ftp://receiver.example.test/webhook-secret-path"}},
])
def test_an_invalid_channel_config_does_not_echo_its_secret_in_the_error_body(
        client: TestClient, caplog: pytest.LogCaptureFixture, config: dict[str, Any]) -> None:
    caplog.set_level(logging.DEBUG)
    t = make_tenant(client, "Acme")
    response = client.post(_url(t), headers=auth(t.owner), json={"name": "bad", **config})
    assert 400 <= response.status_code < 500, response.text
    _no_secret(response.text)
    _no_secret(caplog.text + repr([r.__dict__ for r in caplog.records]))
