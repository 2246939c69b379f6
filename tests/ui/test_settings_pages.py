"""The settings pages in a real browser against a real Apiary (tests/ui/_browser.py): API
keys (created in the UI, the secret read once, used to send a trace that appears on the
traces page without a reload, then revoked and refused by the data plane), members and
invitations, SSO domains, provider keys (only ever their last four characters in the page),
the security tab and the data planes. axe-core and a screenshot on every tab.

The installation is shared with the other page tests: the key test works in a project of
its own (made here through the API with the page's session), and everything created has a
unique name."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from _browser import DP_ID, EMAIL, Installation, axe, shot
from playwright.sync_api import expect

#: A revoked key stops working on a data plane within its auth cache (60 s by default).
REVOCATION_S = 120


def _settings(inst: Installation, tab: str, project_id: str | None = None) -> str:
    return f"{inst.cp_url}/projects/{project_id or inst.project_id}/settings/{tab}"


def _cp(page: Any, inst: Installation, method: str, path: str,
        body: dict[str, Any] | None = None) -> Any:
    """A control-plane call with the page's own session (its cookie and CSRF token)."""
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "apiary_csrf")
    response = page.request.fetch(f"{inst.cp_url}{path}", method=method, data=body,
                                  headers={"X-CSRF-Token": csrf})
    assert response.ok, response.text()
    return response.json()


def _send_event(dp_url: str, api_key: str, name: str) -> httpx.Response:
    """One session event through the data plane's ``POST /v1/events`` with ``api_key``."""
    return httpx.post(f"{dp_url}/v1/events", headers={"authorization": f"Bearer {api_key}"},
                      json={"event_type": "session", "event_name": name,
                            "inputs": {"question": "does the new key work?"}}, timeout=30)


def test_settings_tabs_are_urls_and_keyboard_navigable(installation: Installation,
                                                       page: Any) -> None:
    inst = installation
    page.goto(f"{inst.cp_url}/projects/{inst.project_id}/settings")
    expect(page).to_have_url(_settings(inst, "keys"))
    expect(page.get_by_role("heading", name="Settings", level=1)).to_be_visible()
    tabs = page.get_by_role("tablist", name="Settings sections")
    expect(tabs.get_by_role("tab", name="API keys")).to_have_attribute("aria-selected", "true")
    tabs.get_by_role("tab", name="API keys").focus()
    page.keyboard.press("ArrowRight")
    expect(page).to_have_url(_settings(inst, "members"))
    expect(tabs.get_by_role("tab", name="Members")).to_be_focused()
    expect(page.get_by_role("table", name="Members")).to_be_visible()
    page.keyboard.press("End")
    expect(page).to_have_url(_settings(inst, "data-planes"))
    # A deep link opens its tab; an unknown tab falls back to the first.
    page.goto(_settings(inst, "sso"))
    expect(tabs.get_by_role("tab", name="SSO")).to_have_attribute("aria-selected", "true")
    page.goto(_settings(inst, "nonsense"))
    expect(page).to_have_url(_settings(inst, "keys"))


def test_create_a_key_send_a_trace_with_it_then_revoke_it(installation: Installation,
                                                          page: Any) -> None:
    inst = installation
    page.goto(_settings(inst, "keys"))
    expect(page.get_by_role("table", name="Project API keys")).to_be_visible()
    # A project of this test's own: its traces page shows exactly what this key sends.
    workspace_id = _cp(page, inst, "GET", f"/v1/projects/{inst.project_id}")["workspace_id"]
    project = _cp(page, inst, "POST", f"/v1/workspaces/{workspace_id}/projects",
                  {"name": f"keys-{uuid.uuid4().hex[:8]}"})
    page.goto(_settings(inst, "keys", project["id"]))
    keys = page.get_by_role("table", name="Project API keys")
    expect(keys).to_contain_text("No project keys yet")
    expect(page.get_by_role("table", name="Workspace API keys")).to_be_visible()
    axe(page, "settings: API keys")
    shot(page, "settings-1-keys")

    name = f"ui-key-{uuid.uuid4().hex[:8]}"
    page.get_by_role("button", name="Create project key").click()
    page.get_by_label("Key name").fill(name)
    form = page.get_by_role("form", name="Create a project key")
    expect(form.get_by_role("checkbox", name="events:write")).to_be_checked()
    expect(form.get_by_role("checkbox", name="events:read")).to_be_checked()
    expect(form.get_by_role("checkbox", name="datasets:write")).not_to_be_checked()
    axe(page, "settings: create a key")
    form.get_by_role("button", name="Create key").click()

    # The secret, once, with the warning and a copy button.
    shown = page.get_by_role("region", name=f"New API key {name}")
    expect(shown).to_contain_text("it will not be shown again")
    expect(shown.get_by_role("button", name="Copy")).to_be_visible()
    secret = shown.get_by_label(f"New API key {name}").input_value()
    assert secret.startswith("hh_ingst_")
    row = keys.get_by_role("row").filter(has_text=name)
    expect(row).to_contain_text("events:write")
    expect(row).to_contain_text("Never")
    axe(page, "settings: the new key's secret")
    shot(page, "settings-2-key-secret")
    shown.get_by_role("button", name="Done").click()
    expect(shown).to_have_count(0)
    key_id = secret.removeprefix("hh_ingst_").split("_")[0]
    expect(row).to_contain_text(f"hh_ingst_{key_id}_…")
    assert secret not in page.content()

    # The key sends a trace; the project's traces page shows it without a reload.
    page.goto(f"{inst.cp_url}/projects/{project['id']}/traces")
    sessions = page.get_by_role("table", name="Sessions")
    expect(sessions).to_be_visible()
    trace_name = f"sent-with-{name}"
    sent = _send_event(inst.dp_url, secret, trace_name)
    assert sent.status_code == 200, sent.text
    expect(sessions.get_by_role("link", name=trace_name)).to_be_visible()

    # Revoke it in the UI (after a confirmation); the data plane then refuses it.
    nav = page.get_by_role("navigation", name="Project pages")
    nav.get_by_role("link", name="Settings").click()
    keys = page.get_by_role("table", name="Project API keys")
    row = keys.get_by_role("row").filter(has_text=name)
    row.get_by_role("button", name="Revoke").click()
    dialog = page.get_by_role("alertdialog", name=f"Revoke the key {name}?")
    expect(dialog).to_contain_text("cannot be undone")
    axe(page, "settings: revoke confirmation")
    shot(page, "settings-3-revoke-confirm")
    dialog.get_by_role("button", name="Revoke key").click()
    expect(row).to_contain_text("Revoked")
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    deadline = time.monotonic() + REVOCATION_S
    while (refused := _send_event(inst.dp_url, secret, "after-revocation")).status_code != 401:
        assert refused.status_code == 200, refused.text
        assert time.monotonic() < deadline, "the data plane still accepts a revoked key"
        time.sleep(1)


def test_members_invite_and_withdraw(installation: Installation, page: Any) -> None:
    inst = installation
    page.goto(_settings(inst, "members"))
    members = page.get_by_role("table", name="Members")
    admin_row = members.get_by_role("row").filter(has_text=EMAIL)
    expect(admin_row).to_contain_text("you")
    expect(admin_row.get_by_role("combobox")).to_have_value("owner")
    roles = page.get_by_role("table", name="Roles")
    expect(roles.get_by_role("row").filter(has_text="viewer")).to_contain_text("Built-in")

    invitee = f"invitee-{uuid.uuid4().hex[:8]}@ui.test"
    form = page.get_by_role("form", name="Invite a member")
    form.get_by_label("Email").fill(invitee)
    form.get_by_label("Role").select_option("viewer")
    form.get_by_label("On").select_option("project")
    form.get_by_role("button", name="Send invitation").click()
    token = page.get_by_role("region", name=f"Invitation token for {invitee}")
    expect(token).to_contain_text("it will not be shown again")
    assert token.get_by_label(f"Invitation token for {invitee}").input_value()
    invitations = page.get_by_role("table", name="Invitations")
    row = invitations.get_by_role("row").filter(has_text=invitee)
    expect(row).to_contain_text("viewer")
    expect(row).to_contain_text("Project")
    expect(row).to_contain_text("pending")
    axe(page, "settings: members")
    shot(page, "settings-4-members")
    token.get_by_role("button", name="Done").click()

    row.get_by_role("button", name="Withdraw").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Withdraw invitation").click()
    expect(row).to_contain_text("revoked")
    expect(row.get_by_role("button", name="Withdraw")).to_have_count(0)


def test_provider_keys_show_only_the_last_four(installation: Installation, page: Any) -> None:
    inst = installation
    page.goto(_settings(inst, "provider-keys"))
    table = page.get_by_role("table", name="Provider keys")
    expect(table).to_be_visible()
    axe(page, "settings: provider keys")
    name = f"ui-cred-{uuid.uuid4().hex[:8]}"
    secret = f"sk-ui-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    page.get_by_role("button", name="Add provider key").click()
    form = page.get_by_role("form", name="Add a provider key")
    form.get_by_label("Provider").fill("openai")
    form.get_by_label("Name (optional)").fill(name)
    form.get_by_label("API key").fill(secret)
    form.get_by_role("button", name="Save key").click()
    row = table.get_by_role("row").filter(has_text=name)
    expect(row).to_contain_text(f"…{secret[-4:]}")
    expect(row).to_contain_text("openai")
    expect(page.get_by_role("form", name="Add a provider key")).to_have_count(0)
    assert secret not in page.content()
    assert secret[:-4] not in page.content()
    shot(page, "settings-5-provider-keys")

    # What the data plane answers holds the hint only (the page's own listing, reloaded).
    with page.expect_response(lambda r: r.url.endswith("/v1/proxy/credentials")
                              and r.request.method == "GET") as listing:
        page.reload()
    assert listing.value.ok
    listed = [c for c in listing.value.json()["credentials"] if c["name"] == name]
    assert [c["key_hint"] for c in listed] == [f"…{secret[-4:]}"]
    assert secret[-8:] not in listing.value.text()
    row = page.get_by_role("table", name="Provider keys").get_by_role("row").filter(has_text=name)
    expect(row).to_contain_text(f"…{secret[-4:]}")

    rotated = f"sk-ui-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    row.get_by_role("button", name="Rotate").click()
    row.get_by_label("New openai key").fill(rotated)
    axe(page, "settings: rotate a provider key")
    row.get_by_role("button", name="Save").click()
    expect(row).to_contain_text(f"…{rotated[-4:]}")
    content = page.content()
    assert secret not in content
    assert rotated not in content
    assert rotated[:-4] not in content

    row.get_by_role("button", name="Delete").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete key").click()
    expect(table.get_by_role("row").filter(has_text=name)).to_have_count(0)


def test_sso_security_and_data_planes(installation: Installation, page: Any) -> None:
    inst = installation
    page.goto(_settings(inst, "sso"))
    expect(page.get_by_role("table", name="Identity providers")).to_be_visible()
    expect(page.get_by_label("Trust the identity provider's MFA")).to_be_visible()
    domain = f"ui-{uuid.uuid4().hex[:8]}.example.com"
    claim = page.get_by_role("form", name="Claim a domain")
    claim.get_by_label("Domain").fill("not a domain")
    claim.get_by_role("button", name="Add domain").click()
    expect(page.get_by_role("alert")).to_contain_text("is not a domain name")
    claim.get_by_label("Domain").fill(domain.upper())
    claim.get_by_role("button", name="Add domain").click()
    row = page.get_by_role("table", name="Domains").get_by_role("row").filter(has_text=domain)
    expect(row).to_contain_text("Awaiting administrator approval")
    page.get_by_role("button", name="Add provider").click()
    expect(page.get_by_label("Client secret")).to_have_attribute("type", "password")
    axe(page, "settings: SSO")
    shot(page, "settings-6-sso")
    page.get_by_role("form", name="Add an identity provider").get_by_role(
        "button", name="Cancel").click()
    # The admin is the instance's administrator: it approves the claim from here.
    row.get_by_role("button", name=f"Approve {domain}").click()
    expect(row).to_contain_text("Approved")
    expect(row.get_by_role("button", name=f"Approve {domain}")).to_have_count(0)
    row.get_by_role("button", name="Delete").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete domain").click()
    expect(page.get_by_role("table", name="Domains").get_by_role("row").filter(
        has_text=domain)).to_have_count(0)

    page.get_by_role("tab", name="Security").click()
    expect(page).to_have_url(_settings(inst, "security"))
    expect(page.get_by_role("tab", name="Security")).to_have_attribute("aria-selected", "true")
    axe(page, "settings: security")
    shot(page, "settings-7-security")

    page.get_by_role("tab", name="Data planes").click()
    planes = page.get_by_role("table", name="Data planes")
    plane = planes.get_by_role("row").filter(has_text=DP_ID)
    expect(plane).to_contain_text(inst.dp_url)
    expect(plane).to_contain_text("In use")
    axe(page, "settings: data planes")
    shot(page, "settings-8-data-planes")


def test_a_refusal_is_a_message_not_a_crash(installation: Installation, page: Any) -> None:
    """What a member without the permission sees: the API's 403, as a message, with the
    rest of the tab still working."""
    inst = installation
    denied = {"status": 403, "content_type": "application/json",
              "body": '{"message": "members:read is required", "errorCode": "permission_denied"}'}
    page.route("**/v1/orgs/*/memberships", lambda route: route.fulfill(**denied))
    page.route("**/v1/proxy/credentials", lambda route: route.fulfill(**{
        **denied, "body": '{"message": "proxy:manage is required", '
                          '"errorCode": "permission_denied"}'}))
    page.goto(_settings(inst, "members"))
    expect(page.get_by_role("alert").filter(has_text="list the members")).to_contain_text(
        "You don't have permission to list the members. members:read is required")
    expect(page.get_by_role("table", name="Members")).to_have_count(0)
    expect(page.get_by_role("table", name="Invitations")).to_be_visible()
    axe(page, "settings: members refused")
    page.get_by_role("tab", name="Provider keys").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "You don't have permission to list the provider keys. proxy:manage is required")
    shot(page, "settings-9-refused")
