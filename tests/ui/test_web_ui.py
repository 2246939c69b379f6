"""The web UI in a real browser (headless Debian chromium driven by Playwright) against a
real Apiary: the control plane serving the built UI over HTTP (its own SQLite cpdb) and a
data plane on another origin (real NATS, chDB and writer; tests/_served_planes.py) that
trusts it through its JWKS and grants CORS to the control plane's origin only.

The story, each step asserted on the page and photographed into
``test-artifacts/ui/`` (``APIARY_TEST_ARTIFACTS`` to move it): traces seeded with the
OpenTelemetry SDK; sign in with email, password and TOTP; land on the project's traces and
see the seeded sessions; filter by a metadata value; open a session and read its LLM span's
messages as a conversation; send a new trace and see it appear without a reload. axe-core
finds no serious or critical violation on any of those pages.
"""

from __future__ import annotations

import re
import time
import uuid

import httpx
from _browser import (
    CHROMIUM,
    EMAIL,
    UI_BUILD,
    WAIT_MS,
    Installation,
    Traces,
    axe,
    data_plane_token,
    shot,
    stored_sessions,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def test_sign_in_read_traces_filter_open_a_session_and_see_new_data_live(
        installation: Installation) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)

    inst = installation
    # A project of its own: other browser tests send sessions to the seeded one, and
    # this story counts what it sees.
    project_id, api_key = inst.new_project(f"story-{uuid.uuid4().hex[:8]}")
    traces = Traces(inst.dp_url, api_key)
    try:
        seeded = [
            traces.session("support-chat", "gold", "Where is my parcel?",
                           "It left the depot this morning."),
            traces.session("billing-question", "silver", "Why was I charged twice?",
                           "The second charge is a hold; it will drop off."),
            traces.session("onboarding", "bronze", "How do I invite a teammate?",
                           "Open Settings, then Members."),
        ]
        stored_sessions(inst, 3, api_key)

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.set_default_timeout(WAIT_MS)
            blocked: list[str] = []
            page.on("console", lambda m: m.type == "error" and blocked.append(m.text))

            # A deep link while signed out: the sign-in form, then that page.
            page.goto(f"{inst.cp_url}/")
            expect(page.get_by_role("heading", name="Sign in to Apiary")).to_be_visible()
            axe(page, "sign-in")
            shot(page, "1-sign-in")
            page.get_by_label("Email").fill(EMAIL)
            page.get_by_label("Password").fill(inst.password)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_label("Authentication code")).to_be_visible()
            shot(page, "2-totp")
            page.get_by_label("Authentication code").fill(inst.code())
            page.get_by_role("button", name="Verify").click()

            # The project's traces: the seeded sessions.
            # The first project of the workspace (other tests add projects to it)...
            expect(page).to_have_url(re.compile(rf"^{re.escape(inst.cp_url)}/projects/[^/]+/traces$"))
            # ...then this test's own, through the switcher.
            page.get_by_role("combobox", name="Project", exact=True).select_option(project_id)
            expect(page).to_have_url(f"{inst.cp_url}/projects/{project_id}/traces")
            sessions = page.get_by_role("table", name="Sessions")
            for session_id in seeded:  # OpenTelemetry sessions have no name: their id
                expect(sessions.get_by_role("link", name=session_id)).to_be_visible()
            expect(sessions.get_by_role("row")).to_have_count(4)  # header + 3
            expect(page.get_by_text("3 sessions")).to_be_visible()
            expect(page.get_by_role("combobox", name="Project", exact=True)).to_have_value(
                project_id)
            axe(page, "traces")
            shot(page, "3-traces")

            # Filter by a metadata value: only the gold session's events remain.
            page.get_by_label("Filter on").select_option("metadata")
            page.get_by_label("Metadata path").fill("customer_tier")
            page.get_by_label("Operator").select_option("is")
            page.get_by_label("Value").fill("gold")
            page.get_by_role("button", name="Add filter").click()
            events = page.get_by_role("table", name="Events")
            expect(events.get_by_role("link", name="support-chat")).to_be_visible()
            expect(events.get_by_role("link", name="openai.chat")).to_be_visible()
            expect(events.get_by_role("row")).to_have_count(4)  # header + the session's 3
            expect(events.get_by_role("link", name="billing-question")).to_have_count(0)
            expect(page.get_by_role("list", name="Active filters")).to_contain_text(
                'metadata.customer_tier is "gold"')
            axe(page, "filtered events")
            shot(page, "4-filtered")

            # Open the session; read the LLM span's messages as a conversation.
            events.get_by_role("link", name="support-chat").click()
            expect(page.get_by_role("heading", name="Session")).to_be_visible()
            tree = page.get_by_role("tree", name="Events of the session")
            expect(tree.get_by_role("treeitem")).to_have_count(3)
            tree.get_by_role("treeitem", name="openai.chat").click()
            conversation = page.get_by_role("list", name="Conversation")
            messages = conversation.get_by_role("listitem")
            expect(messages).to_have_count(3)
            expect(messages.nth(0)).to_contain_text("system")
            expect(messages.nth(0)).to_contain_text("Be brief.")
            expect(messages.nth(1)).to_contain_text("user")
            expect(messages.nth(1)).to_contain_text("Where is my parcel?")
            expect(messages.nth(2)).to_contain_text("assistant")
            expect(messages.nth(2)).to_contain_text("It left the depot this morning.")
            expect(page.get_by_role("table", name="Metadata")).to_contain_text("customer_tier")
            axe(page, "session")
            shot(page, "5-session")

            # A deep link in a new tab opens the same session (the control plane serves
            # the app there); the API's own paths stay JSON.
            other = page.context.new_page()
            other.goto(page.url)
            expect(other.get_by_role("tree", name="Events of the session")
                   .get_by_role("treeitem")).to_have_count(3)
            other.close()

            # New data appears without a reload.
            page.get_by_role("link", name="Traces", exact=True).first.click()
            expect(page.get_by_role("table", name="Sessions")).to_be_visible()
            page.evaluate("window.__noReload = 'still here'")
            late = traces.session("late-arrival", "gold", "Is it live?", "Yes.")
            expect(page.get_by_role("table", name="Sessions")
                   .get_by_role("link", name=late)).to_be_visible()
            expect(page.get_by_text("4 sessions")).to_be_visible()
            assert page.evaluate("window.__noReload") == "still here"
            shot(page, "6-live")

            # Signing out ends the session: the sign-in form, and the API refuses the cookie.
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("heading", name="Sign in to Apiary")).to_be_visible()
            assert page.evaluate("fetch('v1/me').then(r => r.status)") == 401

            assert not [m for m in blocked if "CORS" in m or "Content Security" in m], blocked
            browser.close()
    finally:
        traces.close()


def test_the_data_plane_grants_cors_to_the_ui_origin_only(installation: Installation) -> None:
    inst = installation
    preflight = {"access-control-request-method": "POST",
                 "access-control-request-headers": "authorization,content-type"}
    ours = httpx.options(f"{inst.dp_url}/v1/events/export",
                         headers={"origin": inst.cp_url, **preflight})
    assert ours.status_code == 200
    assert ours.headers["access-control-allow-origin"] == inst.cp_url
    assert "access-control-allow-credentials" not in ours.headers

    for evil in ("https://attacker.example", inst.cp_url + ".attacker.example", "null"):
        refused = httpx.options(f"{inst.dp_url}/v1/events/export",
                                headers={"origin": evil, **preflight})
        assert "access-control-allow-origin" not in refused.headers, evil
        simple = httpx.get(f"{inst.dp_url}/v1/sessions", headers={"origin": evil})
        assert "access-control-allow-origin" not in simple.headers, evil


def test_the_control_plane_serves_deep_links_and_keeps_api_paths_json(
        installation: Installation) -> None:
    cp = installation.cp_url
    html = {"accept": "text/html,application/xhtml+xml"}
    deep = httpx.get(f"{cp}/projects/p/sessions/s?event=e", headers=html)
    assert deep.status_code == 200
    assert '<base href="/">' in deep.text
    assert '<div id="root">' in deep.text
    policy = deep.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert f"connect-src 'self' {installation.dp_url};" in policy

    for path in ("/v1/nope", "/v1/projects/nope/whatever", "/.well-known/nope"):
        api = httpx.get(f"{cp}{path}", headers=html)
        assert api.status_code == 404, path
        assert api.json()["errorCode"] == "not_found", path
    assert httpx.get(f"{cp}/projects/p/traces").status_code == 404  # not asking for HTML
    assert httpx.post(f"{cp}/projects/p/traces", headers=html).status_code == 404

    asset = next((UI_BUILD / "assets").glob("*.js")).name
    served = httpx.get(f"{cp}/assets/{asset}")
    assert served.status_code == 200
    assert "immutable" in served.headers["cache-control"]
    for accept in (html, {}):  # never a file outside the build, whatever is asked
        traversal = httpx.get(f"{cp}/assets/..%2F..%2Fapi%2Fapp.py", headers=accept)
        assert "create_control_plane_app" not in traversal.text
        assert traversal.status_code == (200 if accept else 404)  # the app, or JSON 404


def test_a_2000_span_session_renders_virtualized_and_stays_navigable(
        installation: Installation) -> None:
    """The tree and waterfall render only the rows in view: a 2,000-span session opens
    quickly, keeps the DOM small, and its last span is one keystroke away."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    inst = installation
    provider = TracerProvider(resource=Resource.create({"service.name": "ui-big"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
        endpoint=f"{inst.dp_url}/v1/traces",
        headers={"Authorization": f"Bearer {inst.api_key}"}), max_export_batch_size=500))
    tracer = provider.get_tracer("ui-big")
    session_id = str(uuid.uuid4())
    attrs = {"session.id": session_id}
    with tracer.start_as_current_span("big-run", attributes=attrs):
        for step in range(39):
            with tracer.start_as_current_span(f"step-{step}", attributes=attrs):
                for leaf in range(50):
                    with tracer.start_as_current_span(f"leaf-{step}-{leaf}", attributes=attrs):
                        pass
        for tail in range(10):
            name = "last-span" if tail == 9 else f"tail-{tail}"
            with tracer.start_as_current_span(name, attributes=attrs):
                pass
    provider.force_flush()
    provider.shutdown()
    total = 1 + 39 * 51 + 10  # 2,000 spans

    token = data_plane_token(inst)
    deadline = time.monotonic() + 60
    while True:
        found = httpx.post(f"{inst.dp_url}/v1/events/export", timeout=30,
                           headers={"authorization": f"Bearer {token}"},
                           json={"filters": [{"field": "session_id", "operator": "is",
                                              "value": session_id, "type": "id"}],
                                 "limit": 1}).json()["totalEvents"]
        if found == total:
            break
        assert time.monotonic() < deadline, found
        time.sleep(0.5)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.goto(f"{inst.cp_url}/")
        page.get_by_label("Email").fill(EMAIL)
        page.get_by_label("Password").fill(inst.password)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_label("Authentication code").fill(inst.code())
        page.get_by_role("button", name="Verify").click()
        expect(page.get_by_role("table", name="Sessions")).to_be_visible()

        started = time.monotonic()
        page.goto(f"{inst.cp_url}/projects/{inst.project_id}/sessions/{session_id}")
        tree = page.get_by_role("tree", name="Events of the session")
        expect(tree.get_by_role("treeitem", name="big-run")).to_be_visible()
        rendered_s = time.monotonic() - started
        expect(page.get_by_text(f"{total} events")).to_be_visible()
        in_dom = tree.get_by_role("treeitem").count()
        assert 10 < in_dom < 150, in_dom  # virtualized: the rows in view, not 2,000
        print(f"\n2,000-span session: first row after {rendered_s:.2f} s (sign-in excluded, "
              f"page load included), {in_dom} rows in the DOM")

        tree.get_by_role("treeitem", name="big-run").click()
        page.keyboard.press("End")
        last = tree.get_by_role("treeitem", name="last-span")
        expect(last).to_be_visible()
        expect(last).to_have_attribute("aria-selected", "true")
        expect(page.get_by_role("heading", name="last-span", level=2)).to_be_visible()
        assert tree.get_by_role("treeitem").count() < 150
        page.keyboard.press("Home")
        expect(tree.get_by_role("treeitem", name="big-run")).to_have_attribute(
            "aria-selected", "true")
        shot(page, "7-big-session")
        browser.close()
