"""Provider credentials: managed per workspace, used only by their workspace, encrypted at
rest, and never shown or logged."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from _proxy_plane import ProxyPlane, Upstream, chat, chat_body, provider_key, store_credential
from sqlalchemy import text

from apiary.dataplane.db import ProviderCredential
from apiary.dataplane.evaluation.proxy import credentials as vault
from apiary.dataplane.evaluation.proxy.routes import envelope_of
from apiary.errors import ConfigurationError


async def test_each_workspace_calls_with_its_own_key(proxy_plane: ProxyPlane,
                                                     upstream: Upstream) -> None:
    key_1, key_2 = provider_key("one"), provider_key("two")
    await store_credential(proxy_plane, "admin", key_1, upstream.api_base)
    await store_credential(proxy_plane, "b", key_2, upstream.api_base)
    for who, key in (("a", key_1), ("b", key_2), ("a", key_1)):
        response = await chat(proxy_plane, who, chat_body(model="openai/gpt-4o-mini",
                                                          text=f"from {who}"))
        assert response.status_code == 200, response.text
        seen = upstream.fake.last("gpt-4o-mini")
        assert seen.authorization == f"Bearer {key}"
    # org-2 has a workspace with the same id as org-1's ws-1, and no key: it never gets one.
    body = await proxy_plane.fails(400, "POST", "/v1/chat/completions", "other",
                                   json=chat_body())
    assert body["errorCode"] == "provider_not_configured"


async def test_listing_is_masked_and_scoped_to_the_workspace(proxy_plane: ProxyPlane,
                                                             upstream: Upstream) -> None:
    key = provider_key("listed")
    created = await store_credential(proxy_plane, "admin", key, upstream.api_base)
    assert created["key_hint"] == "…" + key[-4:]
    listed = await proxy_plane.ok("GET", "/v1/proxy/credentials", "a")  # proxy:use may list
    assert [c["id"] for c in listed["credentials"]] == [created["id"]]
    assert listed["credentials"][0]["api_base"] == upstream.api_base
    # The same workspace through a workspace-scoped credential sees the same.
    assert (await proxy_plane.ok("GET", "/v1/proxy/credentials", "ws"))["credentials"] == (
        listed["credentials"])
    for other in ("b", "other"):
        ids = [c["id"] for c in
               (await proxy_plane.ok("GET", "/v1/proxy/credentials", other))["credentials"]]
        assert created["id"] not in ids
    await proxy_plane.fails(403, "GET", "/v1/proxy/credentials", "user_only")


async def test_another_tenant_cannot_change_or_delete_a_credential(
        proxy_plane: ProxyPlane, upstream: Upstream) -> None:
    created = await store_credential(proxy_plane, "admin", provider_key("mine"),
                                     upstream.api_base)
    path = f"/v1/proxy/credentials/{created['id']}"
    for other in ("b", "other"):
        assert (await proxy_plane.fails(404, "DELETE", path, other))["errorCode"] == (
            "not_found")
        await proxy_plane.fails(404, "PUT", path, other, json={"api_base": "http://evil/v1"})
    # proxy:use alone may not manage.
    await proxy_plane.fails(403, "DELETE", path, "a")
    await proxy_plane.fails(403, "POST", "/v1/proxy/credentials", "a",
                            json={"provider": "openai", "api_key": "sk-x" * 8})
    listed = await proxy_plane.ok("GET", "/v1/proxy/credentials", "admin")
    assert [c["api_base"] for c in listed["credentials"]] == [upstream.api_base]
    assert (await proxy_plane.ok("DELETE", path, "admin")) == {"deleted": True,
                                                               "id": created["id"]}
    assert (await proxy_plane.ok("GET", "/v1/proxy/credentials", "admin"))["credentials"] == []


async def test_rotating_a_key_changes_the_key_the_provider_sees(
        proxy_plane: ProxyPlane, upstream: Upstream) -> None:
    created = await store_credential(proxy_plane, "admin", provider_key("old"),
                                     upstream.api_base)
    new_key = provider_key("new")
    updated = await proxy_plane.ok("PUT", f"/v1/proxy/credentials/{created['id']}", "admin",
                                   json={"api_key": new_key, "name": "rotated"})
    assert updated["key_hint"] == "…" + new_key[-4:]
    assert updated["name"] == "rotated"
    response = await chat(proxy_plane, "a", chat_body())
    assert response.status_code == 200
    assert upstream.fake.last("gpt-4o-mini").authorization == f"Bearer {new_key}"


async def test_changing_api_base_requires_the_key_again(
        proxy_plane: ProxyPlane, upstream: Upstream) -> None:
    key = provider_key("moving")
    created = await store_credential(proxy_plane, "admin", key, upstream.api_base)
    path = f"/v1/proxy/credentials/{created['id']}"
    moved = f"http://localhost:{upstream.url.rsplit(':', 1)[1]}/v1/"  # the same server
    for api_base in (moved, None):
        refused = await proxy_plane.fails(400, "PUT", path, "admin",
                                          json={"api_base": api_base, "name": "moved"})
        assert refused["details"] == {"field": "api_key"}
    # The same endpoint (as stored) is no change; other fields change without the key.
    same = await proxy_plane.ok("PUT", path, "admin",
                                json={"api_base": upstream.api_base + "/", "name": "same"})
    assert (same["api_base"], same["name"]) == (upstream.api_base, "same")
    with_key = await proxy_plane.ok("PUT", path, "admin",
                                    json={"api_base": moved, "api_key": key})
    assert with_key["api_base"] == moved.rstrip("/")
    assert (await chat(proxy_plane, "a", chat_body())).status_code == 200
    assert upstream.fake.last("gpt-4o-mini").authorization == f"Bearer {key}"


async def test_project_admin_cannot_manage_the_workspace_credentials(
        proxy_plane: ProxyPlane, upstream: Upstream) -> None:
    created = await store_credential(proxy_plane, "admin", provider_key("shared"),
                                     upstream.api_base)
    path = f"/v1/proxy/credentials/{created['id']}"
    listed = await proxy_plane.ok("GET", "/v1/proxy/credentials", "project_admin")
    assert [c["id"] for c in listed["credentials"]] == [created["id"]]
    for method, url, body in (
            ("PUT", path, {"api_key": provider_key("mine")}),
            ("DELETE", path, None),
            ("POST", "/v1/proxy/credentials", {"provider": "anthropic",
                                              "api_key": provider_key("ant")})):
        kwargs = {} if body is None else {"json": body}
        refused = await proxy_plane.fails(403, method, url, "project_admin", **kwargs)
        assert "on the workspace" in refused["message"]
    # A workspace key holds proxy:manage on the workspace itself.
    assert (await proxy_plane.ok("DELETE", path, "ws"))["deleted"] is True


async def test_credentials_are_validated(proxy_plane: ProxyPlane) -> None:
    # A bad api_base is refused by the outbound-URL policy (apiary.outbound), with its reason.
    bad = [
        ({"provider": "no-such-provider", "api_key": "sk-" + "x" * 30}, "invalid_request"),
        ({"provider": "openai", "api_key": "has a space in it"}, "invalid_request"),
        ({"provider": "openai", "api_key": "sk-" + "x" * 30, "api_base": "ftp://host/v1"},
         "outbound_url_refused"),
        ({"provider": "openai", "api_key": "sk-" + "x" * 30,
          "api_base": "http://user:pw@127.0.0.1/v1"}, "outbound_url_refused"),
        ({"provider": "openai"}, "invalid_request"),
    ]
    for body, code in bad:
        reply = await proxy_plane.fails(400, "POST", "/v1/proxy/credentials", "b", json=body)
        assert reply["errorCode"] == code, (body, reply)
    await store_credential(proxy_plane, "b", provider_key("dup"), "http://127.0.0.1:9/v1")
    dup = await proxy_plane.fails(409, "POST", "/v1/proxy/credentials", "b",
                                  json={"provider": "openai", "api_key": provider_key("x")})
    assert dup["errorCode"] == "conflict"


def _dpdb_file(plane: ProxyPlane) -> Path:
    return Path(plane.context.settings.data_dir) / "dp.sqlite"


async def test_keys_are_encrypted_at_rest(proxy_plane: ProxyPlane, upstream: Upstream) -> None:
    key = provider_key("at-rest")
    created = await store_credential(proxy_plane, "admin", key, upstream.api_base)
    with proxy_plane.context.dpdb.transaction() as db:
        row = db.execute(text("SELECT * FROM provider_credentials WHERE id = :id"),
                         {"id": created["id"]}).mappings().one()
        credential = db.get(ProviderCredential, created["id"])
        assert credential is not None
        db.expunge(credential)
    assert not any(key in str(value) for value in row.values())
    assert not any(key[4:20] in str(value) for value in row.values())
    assert row["ciphertext"].startswith("v1:")
    assert row["wrapped_key"].startswith("v1:")
    assert row["key_id"] == envelope_of(proxy_plane.context).key_id
    # Nor anywhere in the database's files (the WAL holds recent pages in the clear).
    proxy_plane.context.dpdb.engine.dispose()
    for path in _dpdb_file(proxy_plane).parent.glob("dp.sqlite*"):
        assert key.encode() not in path.read_bytes(), path
    # The row does hold it, sealed: the envelope opens it, and only for this row.
    envelope = envelope_of(proxy_plane.context)
    assert vault.reveal(envelope, credential) == key
    credential.workspace_id = "ws-2"
    with pytest.raises(ConfigurationError, match="does not decrypt"):
        vault.reveal(envelope, credential)


async def test_keys_never_appear_in_responses_or_logs(
        proxy_plane: ProxyPlane, upstream: Upstream, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    key, rotated = provider_key("leak"), provider_key("leak2")
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in
                                       list(logging.root.manager.loggerDict)]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    texts: list[str] = []
    try:
        with caplog.at_level(logging.DEBUG):
            created = await proxy_plane.call("POST", "/v1/proxy/credentials", "admin", json={
                "provider": "openai", "api_key": key, "api_base": upstream.api_base})
            if created.status_code == 409:  # left by another test: replace it
                await store_credential(proxy_plane, "admin", key, upstream.api_base)
                created = await proxy_plane.call("GET", "/v1/proxy/credentials", "admin")
            texts.append(created.text)
            texts.append((await proxy_plane.call("GET", "/v1/proxy/credentials", "admin")).text)
            for model, stream in (("gpt-4o-mini", False), ("gpt-4o-mini", True),
                                  ("error-401", False), ("error-500", True),
                                  ("broken-stream", True)):
                response = await chat(proxy_plane, "a", chat_body(model=f"openai/{model}",
                                                                  stream=stream))
                texts.append(response.text)
                texts.append(str(response.headers))
            credential_id = (await proxy_plane.ok("GET", "/v1/proxy/credentials",
                                                  "admin"))["credentials"][0]["id"]
            texts.append((await proxy_plane.call(
                "PUT", f"/v1/proxy/credentials/{credential_id}", "admin",
                json={"api_key": rotated})).text)
            # A malformed request echoing the key in a field must not echo it back.
            texts.append((await proxy_plane.call(
                "POST", "/v1/proxy/credentials", "admin",
                json={"provider": "openai", "api_key": key, "bogus": key})).text)
            await proxy_plane.settled()
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
    assert any("echo: hello" in t for t in texts)  # the calls did happen
    assert upstream.fake.requests[-1].authorization is not None
    captured = capfd.readouterr()
    logged = "\n".join(r.getMessage() + " " + str(r.__dict__) for r in caplog.records)
    assert logged  # DEBUG logging was on (LiteLLM logs every call)
    for secret in (key, rotated):
        for where, content in (("responses", "\n".join(texts)), ("log records", logged),
                               ("stdout", captured.out), ("stderr", captured.err)):
            assert secret not in content, f"key found in {where}"
    events = await proxy_plane.context.store.export(proxy_plane.projects["a"],
                                                    {"filters": [], "limit": 10_000})
    assert key not in str(events["events"])


def test_the_database_file_is_sqlite(proxy_plane: ProxyPlane) -> None:
    """The at-rest test above read the right file (a real SQLite database with the table)."""
    with sqlite3.connect(_dpdb_file(proxy_plane)) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert "provider_credentials" in tables
