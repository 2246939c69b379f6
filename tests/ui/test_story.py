"""The web UI's story, end to end, in headless chromium against a real ``apiary up``: an
``ApiaryNode`` on Ray (NATS, the chDB owner, the writers, the Serve deployments, the
control plane serving the UI under ``/cp/``; ``APIARY_UI_DIR`` points it at the build
under test), its mail going to a real SMTP server (aiosmtpd), seeded by the OpenTelemetry
SDK and by the unmodified HoneyHive SDK (``_story_sdk.py``: a traced session with an LLM
call's messages, and two ``evaluate()`` runs over the same dataset).

A newcomer signs up and verifies their address by the mailed link; the admin adds them
to the organization (API); they sign in, enrol TOTP on Settings → Security, sign out and
sign in with a code; land on the project's traces and see the seeded sessions; filter by
a metadata value; open the HoneyHive session and read its LLM span's messages as a
conversation; add the span to a dataset and to an annotation queue; compare the two runs;
score the queue's item; create an API key and send a trace with it that appears without a
reload. Each step is asserted on the page; axe-core on each page, and a screenshot of
each (``story-*``) in ``test-artifacts/ui/``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from _browser import CHROMIUM, UI_BUILD, WAIT_MS, Codes, Traces, _require_ui_and_browser, axe, shot
from security._smtp import LocalSmtpServer

from apiary._private.ports import spare_port
from apiary.settings import ApiarySettings
from apiary.startup.node import ApiaryNode

pytestmark = pytest.mark.ray

SDK_USER = Path(__file__).with_name("_story_sdk.py")
TAG = uuid.uuid4().hex[:6]
HH_SESSION = f"story-support-{TAG}"
HH_QUESTION = f"Can I return parcel {TAG} after thirty days?"
BASELINE, CANDIDATE = f"story-baseline-{TAG}", f"story-candidate-{TAG}"
NEWCOMER = f"newcomer-{TAG}@story.test"
PASSWORD = "a long and unguessable passphrase 7"




@dataclass
class Story:
    url: str  # the node's base URL: the data plane
    cp_url: str  # the control plane, serving the UI
    project_id: str
    admin: httpx.Client  # the admin's API session on the control plane
    admin_dp: httpx.Client  # the admin's data-plane token, for the seeded project
    smtp: LocalSmtpServer
    otel_sessions: dict[str, str]  # root span name -> session id
    hh_session: str
    runs: dict[str, str]  # run name -> run id


def _until(what: str, ready: Callable[[], Any], timeout: float = 60) -> Any:
    """``ready()``'s first truthy value (polled; at most ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not (value := ready()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)
    return value


def _sdk(args: list[str], env: dict[str, str], work: Path, name: str) -> subprocess.Popen[bytes]:
    with (work / f"{name}.out").open("w") as out, (work / f"{name}.err").open("w") as err:
        return subprocess.Popen([sys.executable, str(SDK_USER), *args], cwd=work, env=env,
                                stdout=out, stderr=err)


def _report(process: subprocess.Popen[bytes], work: Path, name: str) -> dict[str, Any]:
    try:
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 0, f"{name}: {(work / f'{name}.err').read_text()[-3000:]}"
    report: dict[str, Any] = json.loads((work / f"{name}.out").read_text().splitlines()[-1])
    return report


def _seed(story_url: str, api_key: str, dp: httpx.Client, work: Path
          ) -> tuple[dict[str, str], str, dict[str, str]]:
    """The OpenTelemetry sessions, the HoneyHive session and the two runs, once stored."""
    env = {**os.environ, "HH_API_URL": story_url, "HH_API_KEY": api_key,
           "STORY_SESSION_NAME": HH_SESSION, "STORY_QUESTION": HH_QUESTION}
    tracing = _sdk(["trace"], env, work, "trace")
    baseline = _sdk(["evaluate", BASELINE, "baseline"], env, work, "baseline")
    traces = Traces(story_url, api_key)
    try:
        otel = {
            "support-chat": traces.session("support-chat", "gold", "Where is my parcel?",
                                           "It left the depot this morning."),
            "billing-question": traces.session("billing-question", "silver",
                                               "Why was I charged twice?",
                                               "The second charge is a hold."),
        }
    finally:
        traces.close()
    hh_session = str(_report(tracing, work, "trace")["session_id"])
    runs = {BASELINE: str(_report(baseline, work, "baseline")["run_id"])}
    # The candidate after the baseline: the older run is the comparison's base.
    candidate = _sdk(["evaluate", CANDIDATE, "candidate"], env, work, "candidate")
    runs[CANDIDATE] = str(_report(candidate, work, "candidate")["run_id"])

    def export(session_id: str) -> list[dict[str, Any]]:
        found = dp.post("/v1/events/export", json={"filters": [
            {"field": "session_id", "operator": "is", "value": session_id, "type": "string"}],
            "limit": 100})
        assert found.status_code == 200, found.text
        events: list[dict[str, Any]] = found.json()["events"]
        return events

    for session_id in otel.values():
        _until(f"session {session_id}", lambda s=session_id: len(export(s)) >= 3)

    def hh_ready() -> bool:
        events = export(hh_session)
        roots = [e for e in events if e["event_type"] == "session"]
        return (len(events) >= 4 and bool(roots)
                and roots[0]["metadata"].get("customer_tier") == "gold")

    _until("the HoneyHive session and its enrichment", hh_ready)
    for name, run_id in runs.items():
        def scored(run_id: str = run_id) -> bool:
            result = dp.get(f"/v1/runs/{run_id}/result")
            assert result.status_code == 200, result.text
            points = result.json()["datapoints"]
            return len(points) == 3 and all(p["metrics"] for p in points)
        _until(f"the results of {name}", scored)
    return otel, hh_session, runs


def _progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    _require_ui_and_browser()
    smtp = LocalSmtpServer()
    smtp.start()
    settings = ApiarySettings(
        data_dir=tmp_path_factory.mktemp("apiary-story"), port=spare_port(), ray_num_cpus=2,
        writer_flush_interval_s=0.2, smtp_url=smtp.url,
        smtp_from="Apiary <noreply@story.test>", ui_dir=UI_BUILD)
    node = ApiaryNode(settings, _progress)  # what `apiary up` says, shown on a failure
    try:
        connection = node.start()
        # The control plane serves the build under test (APIARY_UI_DIR), not the package's.
        script = re.search(r'src="\./(assets/[^"]+\.js)"', (UI_BUILD / "index.html").read_text())
        assert script, "no script in the build's index.html"
        served = httpx.get(f"{connection.control_plane_url}/", headers={"accept": "text/html"})
        assert served.status_code == 200, served.text
        assert script.group(1) in served.text, served.text
        assert connection.admin_email
        assert connection.admin_password
        with httpx.Client(base_url=connection.control_plane_url, timeout=30) as admin:
            login = admin.post("/v1/auth/login", json={
                "email": connection.admin_email, "password": connection.admin_password})
            assert login.status_code == 200, login.text
            admin.headers["authorization"] = f"Bearer {login.json()['session_token']}"
            planes = admin.get("/v1/data-planes")
            assert planes.status_code == 200, planes.text
            issued = admin.post("/v1/auth/token", json={
                "audience": planes.json()[0]["id"], "project_id": connection.project_id})
            assert issued.status_code == 200, issued.text
            with httpx.Client(base_url=connection.url, timeout=30, headers={
                    "authorization": f"Bearer {issued.json()['access_token']}"}) as admin_dp:
                _progress("seeding with the OpenTelemetry and HoneyHive SDKs")
                otel, hh_session, runs = _seed(connection.url, connection.api_key, admin_dp,
                                               tmp_path_factory.mktemp("story-sdk"))
                _progress("seeded")
                yield Story(connection.url, connection.control_plane_url,
                            connection.project_id, admin, admin_dp, smtp, otel, hh_session,
                            runs)
    finally:
        node.stop()
        smtp.stop()




def _row(table: Any, text: str) -> Any:
    return table.get_by_role("row").filter(has=table.page.get_by_role(
        "rowheader", name=text, exact=True))


def test_the_story_of_a_newcomer(story: Story) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        blocked: list[str] = []
        page.on("console", lambda m: m.type == "error" and blocked.append(m.text))
        try:
            _the_story(page, story)
        except BaseException:
            shot(page, "story-failed")  # where it stopped, for whoever reads the failure
            raise
        finally:
            browser.close()
    assert not [m for m in blocked if "CORS" in m or "Content Security" in m], blocked


def _the_story(page: Any, story: Story) -> None:
    from playwright.sync_api import expect

    cp = story.cp_url
    project = f"{cp}/projects/{story.project_id}"
    dataset_name = f"story-dataset-{TAG}"
    queue_name = f"story-queue-{TAG}"
    key_name = f"story-key-{TAG}"
    made = story.admin_dp.post("/v1/queues", json={
        "name": queue_name, "description": "Is the support answer right?",
        "criteria": [{"key": "quality", "kind": "rating", "label": "Quality"}]})
    assert made.status_code == 201, made.text

    # 1. Sign up; verify the address by the link the mail brings.
    page.goto(f"{cp}/")
    expect(page.get_by_role("heading", name="Sign in to Apiary")).to_be_visible()
    axe(page, "sign-in")
    shot(page, "story-01-sign-in")
    page.get_by_role("link", name="Create an account").click()
    expect(page).to_have_url(f"{cp}/signup")
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    page.get_by_label("Name").fill("New Comer")
    page.get_by_label("Email").fill(NEWCOMER)
    page.get_by_label("Password").fill(PASSWORD)
    axe(page, "sign-up")
    shot(page, "story-02-sign-up")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    expect(page.get_by_text(NEWCOMER)).to_be_visible()
    axe(page, "check your inbox")
    shot(page, "story-03-check-inbox")

    link = story.smtp.link_to(NEWCOMER, timeout=30)
    assert link.startswith(f"{cp}/verify-email?token="), link
    page.goto(link)
    expect(page.get_by_role("heading", name="Verify your email")).to_be_visible()
    page.get_by_role("button", name="Confirm my email address").click()
    expect(page.get_by_role("heading", name="Email verified")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text(NEWCOMER)
    axe(page, "email verified")
    shot(page, "story-04-email-verified")

    # 2. Signed in, they belong nowhere yet; the admin adds them to the organization.
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("Email").fill(NEWCOMER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not a member of any project yet")
    me = page.request.get(f"{cp}/v1/me")
    assert me.ok, me.text()
    assert me.json()["user"]["email_verified"] is True, me.text()
    org_id = story.admin.get(f"/v1/projects/{story.project_id}").json()["org_id"]
    added = story.admin.post(f"/v1/orgs/{org_id}/memberships", json={
        "user_id": me.json()["user"]["id"], "role": "admin"})
    assert added.status_code == 201, added.text
    page.reload()
    expect(page).to_have_url(f"{project}/traces")

    # 3. TOTP: enrolled on Settings → Security; then sign out and in with a code.
    page.get_by_role("navigation", name="Project pages").get_by_role(
        "link", name="Settings").click()
    page.get_by_role("tab", name="Security").click()
    card = page.get_by_role("region", name="Two-factor authentication")
    card.get_by_role("button", name="Set up an authenticator app").click()
    expect(card.get_by_role("img", name="QR code to scan with your authenticator app")
           ).to_be_visible()
    codes = Codes(card.get_by_label("setup key").input_value().replace(" ", ""))
    axe(page, "TOTP enrolment")
    shot(page, "story-05-totp-enrolment")
    card.get_by_label("Code from your authenticator app").fill(codes.next())
    card.get_by_role("button", name="Turn on").click()
    expect(card.get_by_role("list", name="Recovery codes").get_by_role("listitem")
           ).to_have_count(10)
    card.get_by_role("button", name="I have saved my recovery codes").click()
    expect(card.get_by_text("On", exact=True)).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to Apiary")).to_be_visible()
    page.get_by_label("Email").fill(NEWCOMER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Authentication code")).to_be_visible()
    axe(page, "TOTP code")
    shot(page, "story-06-totp-code")
    page.get_by_label("Authentication code").fill(codes.next())
    page.get_by_role("button", name="Verify").click()

    # 4. The project's traces: the seeded sessions, from both SDKs.
    expect(page).to_have_url(f"{project}/traces")
    sessions = page.get_by_role("table", name="Sessions")
    expect(sessions.get_by_role("link", name=HH_SESSION)).to_be_visible()
    for session_id in story.otel_sessions.values():  # OpenTelemetry's: their id
        expect(sessions.get_by_role("link", name=session_id)).to_be_visible()
    axe(page, "traces")
    shot(page, "story-07-traces")

    # 5. Filter by a metadata value: the gold sessions' events, not the silver one's.
    page.get_by_label("Filter on").select_option("metadata")
    page.get_by_label("Metadata path").fill("customer_tier")
    page.get_by_label("Operator").select_option("is")
    page.get_by_label("Value").fill("gold")
    page.get_by_role("button", name="Add filter").click()
    expect(page.get_by_role("list", name="Active filters")).to_contain_text(
        'metadata.customer_tier is "gold"')
    events = page.get_by_role("table", name="Events")
    expect(events.get_by_role("link", name="support-chat")).to_be_visible()
    expect(events.get_by_role("link", name=HH_SESSION)).to_be_visible()
    expect(events.get_by_role("link", name="billing-question")).to_have_count(0)
    axe(page, "filtered events")
    shot(page, "story-08-filtered")

    # 6. The HoneyHive session: its LLM span's messages as a conversation.
    events.get_by_role("link", name=HH_SESSION).click()
    expect(page).to_have_url(re.compile(rf"/sessions/{story.hh_session}\?event="))
    expect(page.get_by_role("heading", name="Session")).to_be_visible()
    tree = page.get_by_role("tree", name="Events of the session")
    expect(tree.get_by_role("treeitem", name="answer-question")).to_be_visible()
    expect(tree.get_by_role("treeitem", name="lookup-policy")).to_be_visible()
    tree.get_by_role("treeitem", name="chat-completion").click()
    detail = page.get_by_role("article")
    expect(detail.get_by_role("heading", name="chat-completion")).to_be_visible()
    messages = detail.get_by_role("list", name="Conversation").get_by_role("listitem")
    expect(messages).to_have_count(3)
    expect(messages.nth(0)).to_contain_text("system")
    expect(messages.nth(0)).to_contain_text("You are a concise support agent.")
    expect(messages.nth(1)).to_contain_text("user")
    expect(messages.nth(1)).to_contain_text(HH_QUESTION)
    expect(messages.nth(2)).to_contain_text("assistant")
    expect(messages.nth(2)).to_contain_text("Yes: returns are accepted for sixty days.")
    axe(page, "session")
    shot(page, "story-09-session")
    session_url = page.url

    # 7. The span into the annotation queue, and into a new dataset.
    to_queue = detail.get_by_role("form", name="Add to annotation queue")
    to_queue.get_by_label("Annotation queue").select_option(label=queue_name)
    to_queue.get_by_role("button", name="Add to queue").click()
    expect(to_queue.get_by_role("status")).to_contain_text(f"Added to {queue_name}.")
    to_dataset = detail.get_by_role("form", name="Add to dataset")
    to_dataset.get_by_label("Dataset", exact=True).select_option(label="New dataset…")
    to_dataset.get_by_label("New dataset name").fill(dataset_name)
    to_dataset.get_by_role("button", name="Add to dataset").click()
    expect(to_dataset.get_by_role("status")).to_contain_text(f"Added to {dataset_name}.")
    axe(page, "span added to a dataset and a queue")
    shot(page, "story-10-span-actions")
    to_dataset.get_by_role("link", name="Open the dataset").click()
    expect(page.get_by_role("heading", level=1, name=dataset_name)).to_be_visible()
    points = page.get_by_role("table", name="Datapoints")
    expect(points.get_by_role("row")).to_have_count(2)  # the header and the span's
    expect(points).to_contain_text(HH_QUESTION)
    expect(points).to_contain_text("Yes: returns are accepted for sixty days.")
    axe(page, "dataset")
    shot(page, "story-11-dataset")

    # 8. Compare the two runs: the candidate answers one more datapoint right.
    page.get_by_role("navigation", name="Project pages").get_by_role(
        "link", name="Experiments").click()
    runs = page.get_by_role("table", name="Experiment runs")
    expect(runs.get_by_role("link", name=BASELINE)).to_be_visible()
    expect(runs.get_by_role("link", name=CANDIDATE)).to_be_visible()
    page.get_by_role("checkbox", name=f"Select run {BASELINE}").check()
    page.get_by_role("checkbox", name=f"Select run {CANDIDATE}").check()
    axe(page, "experiments")
    shot(page, "story-12-experiments")
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page).to_have_url(re.compile(
        rf"/experiments/compare\?base={story.runs[BASELINE]}&new={story.runs[CANDIDATE]}$"))
    expect(page.get_by_role("heading", name="Compare runs")).to_be_visible()
    exact = _row(page.get_by_role("table", name="Metric deltas"), "exact_match")
    expect(exact).to_contain_text("Improved")
    expect(exact).to_contain_text("+0.33")
    cards = page.get_by_role("list", name="Datapoint comparisons").get_by_role("listitem")
    france = cards.filter(has_text="France")
    expect(france.locator("del").first).to_contain_text("Lyon")
    expect(france.locator("ins").first).to_contain_text("Paris")
    axe(page, "compare runs")
    shot(page, "story-13-compare")

    # 9. Score the queue's item: the span just added.
    page.get_by_role("navigation", name="Project pages").get_by_role(
        "link", name="Review").click()
    row = page.get_by_role("table", name="Annotation queues").get_by_role("row").filter(
        has_text=queue_name)
    expect(row).to_contain_text("0 of 1 reviewed")
    axe(page, "review")
    shot(page, "story-14-review")
    row.get_by_role("link", name=f"Review {queue_name}").click()
    expect(page.get_by_role("heading", name=queue_name, level=1)).to_be_visible()
    expect(page.get_by_role("list", name="Conversation")).to_contain_text(HH_QUESTION)
    form = page.get_by_role("form", name="Score")
    form.get_by_role("radio", name="4").click()
    expect(form.get_by_role("radio", name="4")).to_be_checked()
    axe(page, "queue item")
    shot(page, "story-15-queue-item")
    form.get_by_role("button", name="Submit score").click()
    expect(page.get_by_role("heading", name="All done")).to_be_visible()
    expect(page.get_by_text("1 of 1 reviewed")).to_be_visible()
    shot(page, "story-16-queue-done")
    page.goto(session_url)  # the score is the span's feedback now
    expect(page.get_by_role("table", name="Feedback")).to_contain_text("quality")

    # 10. A new API key; a trace sent with it appears on the traces page, no reload.
    page.get_by_role("navigation", name="Project pages").get_by_role(
        "link", name="Settings").click()
    expect(page.get_by_role("table", name="Project API keys")).to_be_visible()
    page.get_by_role("button", name="Create project key").click()
    page.get_by_label("Key name").fill(key_name)
    page.get_by_role("form", name="Create a project key").get_by_role(
        "button", name="Create key").click()
    shown = page.get_by_role("region", name=f"New API key {key_name}")
    expect(shown).to_contain_text("it will not be shown again")
    secret = shown.get_by_label(f"New API key {key_name}").input_value()
    axe(page, "the new key")
    shot(page, "story-17-new-key")
    shown.get_by_role("button", name="Done").click()
    page.get_by_role("navigation", name="Project pages").get_by_role(
        "link", name="Traces", exact=True).click()
    sessions = page.get_by_role("table", name="Sessions")
    expect(sessions.get_by_role("link", name=HH_SESSION)).to_be_visible()
    page.evaluate("window.__noReload = 'still here'")
    traces = Traces(story.url, secret)
    try:
        late = traces.session(f"sent-with-{key_name}", "gold", "Is my new key live?",
                              "Yes.")
    finally:
        traces.close()
    expect(sessions.get_by_role("link", name=late)).to_be_visible()
    assert page.evaluate("window.__noReload") == "still here"
    axe(page, "traces with the new trace")
    shot(page, "story-18-live")
