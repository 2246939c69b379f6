"""The dashboard page in a real browser (tests/ui/_browser.py's installation).

The test makes a project of its own (through the control plane's API, as the signed-in
admin: the cookie and the CSRF header), so that what the dashboard counts is exactly what
the test sent, whatever other page tests send to the shared project: four sessions
through the OpenTelemetry SDK with its project key, two LLM calls failing, a
``honeyhive_metrics.quality`` score on each call. The dashboard's figures, its charts'
accessible summaries (one sentence per chart, read from the charts API's data) and the
metric averages are asserted for each time range; then an empty project's empty state,
and a charts API error shown as a message. axe-core and a screenshot on each.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
from _browser import DP_ID, Installation, axe, shot
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

QUALITY = (0.5, 1.0, 0.75, 0.25)  # one per session; average 0.625
FAILING = {1, 3}  # sessions whose LLM call fails


def _new_project(page: Any, inst: Installation, name: str) -> tuple[str, str]:
    """(project id, project API key) of a new project in the admin's workspace, made
    with the page's own session (cookie + CSRF header), as the app itself would."""
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "apiary_csrf")
    headers = {"X-CSRF-Token": csrf}
    home = page.request.get(f"{inst.cp_url}/v1/projects/{inst.project_id}")
    assert home.ok, home.text()
    made = page.request.post(
        f"{inst.cp_url}/v1/workspaces/{home.json()['workspace_id']}/projects",
        data={"name": name}, headers=headers)
    assert made.status == 201, made.text()
    project_id = made.json()["id"]
    key = page.request.post(f"{inst.cp_url}/v1/projects/{project_id}/keys",
                            data={"name": f"{name}-key"}, headers=headers)
    assert key.status == 201, key.text()
    return project_id, key.json()["api_key"]


def _send_sessions(dp_url: str, api_key: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "ui-dashboard"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=f"{dp_url}/v1/traces", headers={"Authorization": f"Bearer {api_key}"})))
    tracer = provider.get_tracer("ui-dashboard")
    try:
        for i, quality in enumerate(QUALITY):
            common = {"session.id": str(uuid.uuid4())}
            llm = {**common, "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
                   "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": f"question {i}",
                   "gen_ai.completion.0.role": "assistant",
                   "gen_ai.completion.0.content": f"answer {i}",
                   "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 7,
                   "honeyhive_metrics.quality": quality}
            with tracer.start_as_current_span(f"dashboard-run-{i}", attributes=common), \
                    tracer.start_as_current_span("openai.chat", attributes=llm) as call:
                time.sleep(0.002)
                if i in FAILING:
                    call.set_status(Status(StatusCode.ERROR, "RateLimitError: 429"))
    finally:
        provider.shutdown()


def _wait_stored(inst: Installation, api_key: str, events: int) -> None:
    """Until the data plane serves ``events`` events of the key's project."""
    token = httpx.post(f"{inst.cp_url}/v1/auth/token",
                       headers={"authorization": f"Bearer {api_key}"},
                       json={"audience": DP_ID}).json()["access_token"]
    deadline = time.monotonic() + 30
    while True:
        got = httpx.post(f"{inst.dp_url}/v1/events/export", timeout=10,
                         headers={"authorization": f"Bearer {token}"},
                         json={"filters": [], "limit": 1})
        if got.status_code == 200 and got.json()["totalEvents"] >= events:
            return
        assert time.monotonic() < deadline, got.text
        time.sleep(0.2)


def _figure(page: Any, term: str) -> Any:
    """The value (dd) of one of the dashboard's figures."""
    return page.locator(".dash-figure").filter(
        has=page.get_by_role("term").get_by_text(term, exact=True)).get_by_role("definition")


def test_the_dashboard_shows_volume_errors_latency_tokens_and_metrics(
        installation: Installation, page: Any) -> None:
    from playwright.sync_api import expect

    inst = installation
    project_id, api_key = _new_project(page, inst, f"dashboard-{uuid.uuid4().hex[:8]}")
    _send_sessions(inst.dp_url, api_key)
    _wait_stored(inst, api_key, 2 * len(QUALITY))

    page.goto(f"{inst.cp_url}/projects/{project_id}/dashboard")
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    expect(page.get_by_role("combobox", name="Time range")).to_have_value("24h")

    figures = page.get_by_role("group", name="Totals, last 24 hours")
    expect(figures).to_be_visible()
    expect(_figure(page, "Events")).to_have_text("8")
    expect(_figure(page, "Sessions")).to_have_text("4")
    expect(_figure(page, "Error rate")).to_have_text("25%2 errors")
    expect(_figure(page, "Tokens")).to_have_text("76")
    expect(_figure(page, "Latency p95")).to_have_text(re.compile(r"\d+(\.\d+)? (ms|s)$"))

    # Each chart: a heading, and its data in one sentence for a screen reader.
    for heading in ("Events", "Sessions", "Error rate", "Latency", "Cost", "Tokens"):
        expect(page.get_by_role("heading", name=heading, exact=True, level=2)).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(
        r"^Events per hour, last 24 hours: 8 in total; the most, \d, at "))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(
        r"^Sessions per hour, last 24 hours: 4 in total"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(
        r"^Error rate per hour, last 24 hours: 25% overall"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(
        r"^Tokens per hour, last 24 hours: 76 in total"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(
        r"^Latency per hour, last 24 hours: p50 \d\S* m?s and p95 \d\S* m?s over the range"
    ))).to_be_visible()
    # ... and as a table (visually hidden), hour by hour.
    expect(page.get_by_role("table", name="Error rate per hour")
           .get_by_role("columnheader")).to_have_text(["Hour", "Error rate", "Errors", "Events"])

    # The metric averages, from the metrics the events carry.
    expect(page.get_by_role("heading", name="Metric averages", level=2)).to_be_visible()
    expect(page.get_by_role("heading", name="quality", level=3)).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(
        r"^Average quality per hour, last 24 hours: 0\.625 overall"))).to_be_visible()
    axe(page, "dashboard")
    shot(page, "dashboard-24h")

    # The range picks the buckets: hours for a week, days for a month; the URL keeps it.
    page.get_by_label("Time range").select_option("7d")
    expect(page.get_by_role("img", name=re.compile(
        r"^Events per hour, last 7 days: 8 in total"))).to_be_visible()
    expect(page.get_by_role("group", name="Totals, last 7 days")).to_be_visible()
    expect(page).to_have_url(re.compile(r"[?&]range=7d"))
    page.get_by_label("Time range").select_option("30d")
    expect(page.get_by_role("img", name=re.compile(
        r"^Events per day, last 30 days: 8 in total; the most, 8, at "))).to_be_visible()
    expect(_figure(page, "Events")).to_have_text("8")
    expect(page.get_by_role("table", name="Events per day")
           .get_by_role("columnheader")).to_have_text(["Day", "Events"])
    axe(page, "dashboard, 30 days")
    shot(page, "dashboard-30d")


def test_the_dashboard_of_a_project_without_events_says_so(
        installation: Installation, page: Any) -> None:
    from playwright.sync_api import expect

    project_id, _ = _new_project(page, installation, f"dashboard-empty-{uuid.uuid4().hex[:8]}")
    page.goto(f"{installation.cp_url}/projects/{project_id}/dashboard")
    expect(page.get_by_role("heading", name="No events in the last 24 hours")).to_be_visible()
    expect(page.get_by_role("link", name="Settings → API keys")).to_have_attribute(
        "href", f"/projects/{project_id}/settings/keys")
    axe(page, "empty dashboard")
    shot(page, "dashboard-empty")


def test_a_charts_api_error_is_shown_as_a_message(installation: Installation,
                                                  page: Any) -> None:
    from playwright.sync_api import expect

    def refuse(route: Any) -> None:
        route.fulfill(status=400, content_type="application/json",
                      headers={"access-control-allow-origin": installation.cp_url},
                      body='{"errorCode": "invalid_request", "message": "dateRange is wrong"}')

    page.route(re.compile(r".*/v1/charts/query$"), refuse)
    page.goto(f"{installation.cp_url}/projects/{installation.project_id}/dashboard")
    expect(page.get_by_role("alert")).to_have_text(
        "Could not load the dashboard: dateRange is wrong")
    expect(page.get_by_role("button", name="Try again")).to_be_visible()
    axe(page, "dashboard error")
    shot(page, "dashboard-error")
