"""The alert pages and the notification settings in a real browser against a real Apiary
(tests/ui/_browser.py): create an alert rule in the form, see the control plane's 400 for
a bad threshold next to the field it names, pause and resume it, see a 409 when the alert
changed meanwhile, open its detail page (the preview chart, or its "unavailable" state when
no data plane answers the preview; the activity list), edit and delete it; create
notification channels (the server's refusal of a URL next to that field; a generated
signing secret shown once and never again), send a test (202: "test queued"), edit one
without retyping its secrets, delete one; and the data planes tab's row. axe-core and a
screenshot on every page.

The installation is shared with the other page tests: each test works in a project of its
own and gives what it creates unique names."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from _browser import DP_ID, Installation, axe, shot
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from apiary.control.db import DataPlane, Project
from apiary.control.federation import record_activity


def _cp(page: Any, inst: Installation, method: str, path: str,
        body: dict[str, Any] | None = None, status: int | None = None) -> Any:
    """A control-plane call with the page's own session (its cookie and CSRF token)."""
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "apiary_csrf")
    response = page.request.fetch(f"{inst.cp_url}{path}", method=method, data=body,
                                  headers={"X-CSRF-Token": csrf})
    if status is not None:
        assert response.status == status, response.text()
    else:
        assert response.ok, response.text()
    return response.json() if response.status != 204 else None


def _project(page: Any, inst: Installation, prefix: str) -> str:
    workspace_id = _cp(page, inst, "GET", f"/v1/projects/{inst.project_id}")["workspace_id"]
    return str(_cp(page, inst, "POST", f"/v1/workspaces/{workspace_id}/projects",
                   {"name": f"{prefix}-{uuid.uuid4().hex[:8]}"})["id"])


def _stale_mute(page: Any, inst: Installation, row: Any, project_id: str, alert_id: str,
                name: str) -> None:
    """Mute the alert through the API, then click the row's (now stale) "Mute". The list
    also refreshes itself every 30 s: when that lands in between (the button already says
    "Unmute"), unmute through the API and try again (bounded)."""
    path = f"/v1/projects/{project_id}/alerts/{alert_id}"
    for _ in range(5):
        expect(row.get_by_role("button", name=f"Mute {name}")).to_be_visible()
        _cp(page, inst, "POST", f"{path}/mute")
        try:
            row.get_by_role("button", name=f"Mute {name}").click(timeout=2_000)
            return
        except PlaywrightError:
            _cp(page, inst, "POST", f"{path}/unmute")
    raise AssertionError("the list refreshed between every API change and the click")


def test_create_an_alert_see_a_bad_threshold_then_pause_resume_edit_and_delete(
        installation: Installation, page: Any) -> None:
    inst = installation
    project_id = _project(page, inst, "alerts")
    page.goto(f"{inst.cp_url}/projects/{project_id}/traces")
    page.get_by_role("navigation", name="Project pages").get_by_role("link", name="Alerts").click()
    expect(page).to_have_url(f"{inst.cp_url}/projects/{project_id}/alerts")
    expect(page.get_by_role("heading", name="No alerts yet")).to_be_visible()
    axe(page, "alerts: empty")
    page.get_by_role("button", name="Create an alert").click()

    form = page.get_by_role("form", name="New alert")
    name = f"model errors {uuid.uuid4().hex[:6]}"
    form.get_by_label("Name", exact=True).fill(name)
    form.get_by_label("Measure", exact=True).select_option("error_rate")
    form.get_by_label("Window", exact=True).fill("1")
    form.get_by_label("Window unit").select_option("m")
    form.get_by_label("Warning value").fill("0.5")
    form.get_by_role("checkbox", name="Critical threshold").check()
    form.get_by_label("Critical value").fill("0.3")
    # The filter builder's own form adds an event-type filter to the rule.
    form.get_by_label("Filter on").select_option("event_type")
    form.get_by_label("Type", exact=True).select_option("model")
    form.get_by_role("button", name="Add filter").click()
    expect(form.get_by_role("list", name="Active filters")).to_contain_text("model")
    critical = form.get_by_role("group", name="Critical threshold")
    # While typing: the control plane's rule as advice; it is the server that refuses.
    expect(critical.get_by_role("status")).to_contain_text("must be stricter than warning")
    form.get_by_role("button", name="Create alert").click()
    refusal = critical.get_by_role("alert")
    expect(refusal).to_have_text("critical (>= 0.3) must be stricter than warning (>= 0.5)")
    expect(form.get_by_label("Critical value")).to_have_attribute("aria-invalid", "true")
    axe(page, "alerts: a refused threshold")
    shot(page, "alerts-1-bad-threshold")

    # A window under a minute: refused before it is sent, next to the window.
    form.get_by_label("Critical value").fill("0.9")
    expect(refusal).to_have_count(0)
    form.get_by_label("Window", exact=True).fill("30")
    form.get_by_label("Window unit").select_option("s")
    form.get_by_role("button", name="Create alert").click()
    expect(form.get_by_role("alert")).to_have_text("A window is 1 minute to 7 days.")
    form.get_by_label("Window", exact=True).fill("1")
    form.get_by_label("Window unit").select_option("m")
    form.get_by_role("button", name="Create alert").click()

    # Created: its page, with the preview (or why there is none) and the activity.
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    alert_id = page.url.split("/alerts/")[1].split("?")[0]
    stored = _cp(page, inst, "GET", f"/v1/projects/{project_id}/alerts/{alert_id}")
    assert stored["condition"]["window_s"] == 60
    assert stored["condition"]["warning"] == {"op": ">=", "value": 0.5}
    assert stored["condition"]["critical"] == {"op": ">=", "value": 0.9}
    assert stored["condition"]["filters"] == [
        {"field": "event_type", "operator": "is", "value": "model", "type": "string"}]
    expect(page.get_by_text("Active", exact=True)).to_be_visible()
    # No data plane computes the preview here (the project is not assigned to a federated
    # one): a clear empty state with the control plane's reason, never a blank or a crash.
    preview = page.get_by_role("region", name="Preview")
    expect(preview.get_by_role("status")).to_have_text(re.compile(r"^Preview unavailable: .+"))
    page.get_by_label("Time range").select_option("7d")
    expect(page).to_have_url(re.compile(r"range=7d"))
    expect(preview.get_by_role("status")).to_have_text(re.compile(r"^Preview unavailable: .+"))
    # The activity: the list (nothing yet), or why it cannot be read.
    activity = page.get_by_role("region", name="Recent activity")
    expect(activity.get_by_role("table", name="Alert activity").or_(
        activity.get_by_text(re.compile(r"^Activity unavailable: .+")))).to_be_visible()
    axe(page, "alerts: detail")
    shot(page, "alerts-2-detail")

    # Pause and resume (the badge follows), from the list.
    page.get_by_role("link", name="Alerts", exact=True).first.click()
    table = page.get_by_role("table", name="Alerts")
    row = table.get_by_role("row").filter(has_text=name)
    expect(row).to_contain_text("Error rate over 1 minute")
    expect(row).to_contain_text("warning >= 0.5 · critical >= 0.9")
    row.get_by_role("button", name=f"Pause {name}").click()
    expect(row).to_contain_text("Paused")
    assert _cp(page, inst, "GET", f"/v1/projects/{project_id}/alerts/{alert_id}")["paused"]
    row.get_by_role("button", name=f"Resume {name}").click()
    expect(row).to_contain_text("Active")
    assert not _cp(page, inst, "GET", f"/v1/projects/{project_id}/alerts/{alert_id}")["paused"]
    axe(page, "alerts: list")
    shot(page, "alerts-3-list")

    # Muted through the API meanwhile: the page's stale "Mute" gets the 409, as it says.
    _stale_mute(page, inst, row, project_id, alert_id, name)
    expect(row.get_by_role("alert")).to_contain_text(f"Could not mute “{name}”:")
    conflict = _cp(page, inst, "POST", f"/v1/projects/{project_id}/alerts/{alert_id}/mute",
                   status=409)
    expect(row.get_by_role("alert")).to_contain_text(conflict["message"])
    expect(row).to_contain_text("Muted")  # the list was refreshed
    row.get_by_role("button", name=f"Unmute {name}").click()
    expect(row).to_contain_text("Active")

    # Edit: a drift rule on p95 latency; the stored rule follows.
    row.get_by_role("link", name=name).click()
    page.get_by_role("button", name="Edit").click()
    edit = page.get_by_role("form", name=f"Edit {name}")
    expect(edit.get_by_label("Window", exact=True)).to_have_value("1")
    edit.get_by_label("Alert type").select_option("drift")
    edit.get_by_label("Measure", exact=True).select_option("latency_p95")
    edit.get_by_label("Direction").select_option("up")
    edit.get_by_label("Window", exact=True).fill("1")
    edit.get_by_label("Window unit").select_option("h")
    edit.get_by_label("Critical value").fill("1")
    edit.get_by_role("button", name="Save alert").click()
    expect(edit).to_have_count(0)
    changed = _cp(page, inst, "GET", f"/v1/projects/{project_id}/alerts/{alert_id}")["condition"]
    assert {k: changed[k] for k in ("type", "field", "direction", "window_s", "critical")} == {
        "type": "drift", "field": "latency_p95", "direction": "up", "window_s": 3600,
        "critical": {"op": ">=", "value": 1.0}}
    expect(page.get_by_text("Change of latency p95 over 1 hour")).to_be_visible()

    # Delete, after a confirmation: back to the list, which no longer has it.
    page.get_by_role("button", name="Delete").click()
    page.get_by_role("alertdialog", name=f"Delete the alert {name}?").get_by_role(
        "button", name="Delete alert").click()
    expect(page).to_have_url(f"{inst.cp_url}/projects/{project_id}/alerts")
    expect(page.get_by_role("heading", name="No alerts yet")).to_be_visible()
    _cp(page, inst, "GET", f"/v1/projects/{project_id}/alerts/{alert_id}", status=404)


def test_notification_channels_create_test_edit_delete_and_the_data_planes_tab(
        installation: Installation, page: Any) -> None:
    inst = installation
    project_id = _project(page, inst, "channels")
    org_id = _cp(page, inst, "GET", f"/v1/projects/{project_id}")["org_id"]
    page.goto(f"{inst.cp_url}/projects/{project_id}/settings/notifications")
    tabs = page.get_by_role("tablist", name="Settings sections")
    expect(tabs.get_by_role("tab", name="Notification channels")).to_have_attribute(
        "aria-selected", "true")
    table = page.get_by_role("table", name="Notification channels")
    expect(table).to_be_visible()

    # A Slack channel for this project; a URL the outbound policy refuses is named.
    slack = f"slack-{uuid.uuid4().hex[:6]}"
    page.get_by_role("button", name="Add channel").click()
    form = page.get_by_role("form", name="Add a notification channel")
    form.get_by_label("Channel name").fill(slack)
    form.get_by_label("Type").select_option("slack")
    url_field = form.get_by_label("Slack webhook URL")
    expect(url_field).to_have_attribute("type", "password")
    url_field.fill("http://127.0.0.1:9/hook")
    form.get_by_label("Scope").select_option("project")
    form.get_by_label("Project").select_option(project_id)
    form.get_by_role("checkbox", name="resolution").uncheck()
    form.get_by_role("button", name="Create channel").click()
    refused = form.locator("#ch-config-webhook_url-error")
    expect(refused).to_be_visible()
    expect(url_field).to_have_attribute("aria-invalid", "true")
    axe(page, "settings: a refused channel URL")
    shot(page, "channels-1-refused-url")
    slack_url = "https://hooks.slack.invalid/services/T000/B000/secretpart"
    url_field.fill(slack_url)
    form.get_by_role("button", name="Create channel").click()
    row = table.get_by_role("row").filter(has_text=slack)
    expect(row).to_contain_text("Slack")
    expect(row).to_contain_text("…alid")  # the host's last four characters, no more
    expect(row).to_contain_text("critical")
    expect(row).not_to_contain_text("resolution")
    assert "secretpart" not in page.content()

    assert inst.control_plane is not None
    # "Send test": while no data plane serves the project, the control plane says 409...
    if _cp(page, inst, "GET", f"/v1/projects/{project_id}")["data_plane_id"] is None:
        row.get_by_role("button", name=f"Send test to {slack}").click()
        expect(row.get_by_role("status")).to_contain_text(
            "Test not sent: no data plane serves")
        # ...then the project is served by this installation's data plane (in cpdb: the
        # data plane is not federated here, so PUT .../data-plane refuses it).
        with inst.control_plane.transaction() as db:
            project = db.get(Project, project_id)
            assert project is not None
            project.data_plane_id = DP_ID
    # A data plane serves it: the test is queued (202).
    row.get_by_role("button", name=f"Send test to {slack}").click()
    expect(row.get_by_role("status")).to_contain_text(f"Test queued (data plane {DP_ID}")
    axe(page, "settings: notification channels")
    shot(page, "channels-2-list")

    # A webhook with a generated signing secret: shown once, then never again.
    hook = f"hook-{uuid.uuid4().hex[:6]}"
    page.get_by_role("button", name="Add channel").click()
    form = page.get_by_role("form", name="Add a notification channel")
    form.get_by_label("Channel name").fill(hook)
    form.get_by_label("Type").select_option("webhook")
    form.get_by_label("Webhook URL").fill("https://receiver.example.invalid/apiary")
    form.get_by_role("button", name="Create channel").click()
    shown = page.get_by_role("region", name=f"Signing secret of {hook}")
    expect(shown).to_contain_text("it will not be shown again")
    secret = shown.get_by_label(f"Signing secret of {hook}").input_value()
    assert secret.startswith("whsec_")
    shot(page, "channels-3-signing-secret")
    shown.get_by_role("button", name="Done").click()
    expect(shown).to_have_count(0)
    assert secret not in page.content()
    hook_row = table.get_by_role("row").filter(has_text=hook)
    expect(hook_row).to_contain_text("signed")
    expect(hook_row).to_contain_text("Organization")

    # Edit the webhook's name and severities without retyping its secrets: kept.
    hook_row.get_by_role("button", name=f"Edit {hook}").click()
    edit = page.get_by_role("form", name=f"Edit the channel {hook}")
    expect(edit.get_by_label("Webhook URL")).to_have_value("")
    expect(edit.get_by_label("Signing secret")).to_have_value("")
    edit.get_by_label("Channel name").fill(f"{hook}-renamed")
    edit.get_by_role("checkbox", name="warning").uncheck()
    axe(page, "settings: edit a channel")
    edit.get_by_role("button", name="Save channel").click()
    expect(edit).to_have_count(0)
    channels = _cp(page, inst, "GET", f"/v1/orgs/{org_id}/notification-channels")
    saved = next(c for c in channels if c["name"] == f"{hook}-renamed")
    assert saved["severities"] == ["critical", "resolution"]
    assert saved["config"] == {"url_hint": "…alid", "has_secret": True}

    # Delete it, after a confirmation.
    renamed = table.get_by_role("row").filter(has_text=f"{hook}-renamed")
    renamed.get_by_role("button", name="Delete").click()
    page.get_by_role("alertdialog", name=f"Delete the channel {hook}-renamed?").get_by_role(
        "button", name="Delete channel").click()
    expect(renamed).to_have_count(0)
    assert all(c["id"] != saved["id"]
               for c in _cp(page, inst, "GET", f"/v1/orgs/{org_id}/notification-channels"))

    # The data planes tab: this installation's data plane, its status and its last health
    # report (stored as the federation stream stores one: this data plane is not
    # federated here, so it reports none itself).
    with inst.control_plane.transaction() as db:
        dp = db.get(DataPlane, DP_ID)
        assert dp is not None
        dp.last_health = {"at_unix_ms": 0, "ingest_rate": 1234.5, "writer_lag": 17,
                          "dead_letters": 2, "evaluator_backlog": 40, "storage_bytes": 0,
                          "versions": {}, "status": "degraded", "reasons": ["writer lag"],
                          "received_at": datetime.now(UTC).isoformat()}
        dp.last_seen_at = datetime.now(UTC)
    tabs.get_by_role("tab", name="Data planes").click()
    planes = page.get_by_role("table", name="Data planes")
    plane = planes.get_by_role("row").filter(has_text=DP_ID)
    expect(plane).to_contain_text(inst.dp_url)
    expect(plane).to_contain_text(re.compile(
        r"Local \(not federated\)|Connected|Disconnected|Draining"))
    expect(plane).to_contain_text("In use")
    for header in ("Ingest rate", "Writer lag", "Dead letters", "Evaluator backlog", "Last seen"):
        expect(planes.get_by_role("columnheader", name=header)).to_be_visible()
    cells = plane.get_by_role("cell")
    expect(cells.nth(3)).to_have_text("1,235/s")
    expect(cells.nth(4)).to_have_text("17")
    expect(cells.nth(5)).to_have_text("2")
    expect(cells.nth(6)).to_have_text("40")
    expect(cells.nth(7)).to_have_text("just now")
    expect(plane).to_contain_text("degraded: writer lag")
    axe(page, "settings: data planes with health")
    shot(page, "channels-4-data-planes")


def test_the_preview_chart_the_reported_activity_and_a_manual_resolve(
        installation: Installation, page: Any) -> None:
    """The chart itself, on a preview in the shape the control plane answers (the data
    plane that computes one is federated, which this installation's is not: the answer
    is given by the test, the page's requests for it are checked); then a firing and a
    delivery reported as a data plane reports them (the control plane's own
    ``record_activity``), shown as the alert's state and activity, and resolved by hand."""
    inst = installation
    project_id = _project(page, inst, "preview")
    alert = _cp(page, inst, "POST", f"/v1/projects/{project_id}/alerts", {
        "name": "error spike", "condition": {
            "type": "aggregate", "field": "error_rate", "window_s": 300,
            "warning": {"op": ">=", "value": 0.5}, "critical": {"op": ">=", "value": 0.9}}})
    asked: list[dict[str, int]] = []

    def answer(route: Any) -> None:
        query = dict(p.split("=", 1) for p in route.request.url.split("?", 1)[1].split("&"))
        start, end = int(query["from"]), int(query["to"])
        asked.append({"from": start, "to": end})
        step = (end - start) // 60
        series = [{"t": start + step * (i + 1),
                   "value": None if i < 5 else round(0.2 + 0.8 * (i / 59) ** 3, 4)}
                  for i in range(60)]
        route.fulfill(status=200, content_type="application/json", body=json.dumps({
            "alert_id": alert["id"], "field": "error_rate", "type": "aggregate",
            "window_s": 300, "from": start, "to": end, "series": series,
            "warning": {"op": ">=", "value": 0.5}, "critical": {"op": ">=", "value": 0.9}}))

    page.route(f"**/v1/projects/{project_id}/alerts/{alert['id']}/preview?*", answer)
    page.goto(f"{inst.cp_url}/projects/{project_id}/alerts/{alert['id']}")
    chart = page.get_by_role("figure", name="The measured value and the thresholds, 60 points")
    expect(chart).to_be_visible()
    expect(chart.locator("svg")).to_contain_text("warning >= 0.5")
    expect(chart.locator("svg")).to_contain_text("critical >= 0.9")
    expect(chart.locator("path.recharts-line-curve")).to_have_count(1)
    assert asked[-1]["to"] - asked[-1]["from"] == 86_400  # the default range: 24 h
    assert asked[-1]["to"] % 60 == 0
    axe(page, "alerts: preview chart")
    shot(page, "alerts-4-preview-chart")

    with page.expect_request(lambda r: "/preview?" in r.url) as request:
        page.get_by_label("Time range").select_option("1h")
    expect(page).to_have_url(re.compile(r"range=1h"))
    query = dict(p.split("=", 1) for p in request.value.url.split("?", 1)[1].split("&"))
    assert int(query["to"]) - int(query["from"]) == 3_600
    expect(chart).to_be_visible()

    # A critical firing and its Slack delivery, reported by the data plane serving the
    # project (assigned in cpdb: not federated here).
    assert inst.control_plane is not None
    now = datetime.now(UTC)
    fired = (now - timedelta(minutes=2)).replace(microsecond=0)
    window_end = int(fired.timestamp())
    reports = [
        {"event_id": f"transition.{alert['id']}.{window_end}.critical", "kind": "transition",
         "stage": "critical", "state": "triggered", "value": 0.93, "threshold": 0.9,
         "window_end": window_end, "at": fired.isoformat()},
        {"event_id": f"delivery.d-{uuid.uuid4().hex}.delivered", "kind": "delivery",
         "stage": "critical", "channel_id": "c1", "channel_type": "slack",
         "outcome": "delivered", "attempts": 1,
         "at": (fired + timedelta(seconds=3)).isoformat()},
    ]
    with inst.control_plane.transaction() as db:
        project = db.get(Project, project_id)
        assert project is not None
        project.data_plane_id = DP_ID
        for report in reports:
            payload = {"org_id": project.org_id, "project_id": project_id,
                       "alert_id": alert["id"], **report}
            assert record_activity(db, data_plane_id=DP_ID, event_id=report["event_id"],
                                   payload=json.dumps(payload).encode(), now=now) == "stored"
    page.reload()
    expect(page.get_by_text("Triggered · critical", exact=True)).to_be_visible()
    activity = page.get_by_role("table", name="Alert activity")
    expect(activity.get_by_role("row")).to_have_count(3)  # the header and two events
    expect(activity.get_by_role("row").nth(1)).to_contain_text(
        "Delivered critical to the slack channel after 1 attempt")
    expect(activity.get_by_role("row").nth(2)).to_contain_text(
        "Triggered critical at 0.93 (threshold 0.9)")
    axe(page, "alerts: triggered, with activity")
    shot(page, "alerts-5-activity")
    page.get_by_role("button", name="Resolve error spike").click()
    expect(page.get_by_text("Resolved", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Resolve error spike")).to_have_count(0)
    stored = _cp(page, inst, "GET", f"/v1/projects/{project_id}/alerts/{alert['id']}")
    assert stored["evaluation_state"] == "resolved"
