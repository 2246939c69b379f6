"""The evaluator pages in a real browser (tests/ui/_browser.py): define a Python metric in
the code editor, test it on a seeded event in the data plane's sandbox and read its score,
see a failing draft's error, enable it online with a sampling rate and a filter, and find
it listed as online; axe-core and a screenshot on every page.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from _browser import Installation, axe, data_plane_token, shot
from playwright.sync_api import expect

ANSWER = "It left the depot this morning."
CODE = '''def evaluate(event):
    answer = str(event["outputs"].get("content", ""))
    print("checking", len(answer), "characters")
    return {"score": len(answer.split()), "explanation": "words in the answer"}
'''


def _seeded_event(inst: Installation) -> str:
    """One model event of the project, stored (sent with the API key, read back)."""
    event_id = str(uuid.uuid4())
    sent = httpx.post(f"{inst.dp_url}/v1/events/batch", timeout=10,
                      headers={"authorization": f"Bearer {inst.api_key}"},
                      json={"events": [{
                          "event_type": "model", "event_name": "evaluator-ui-call",
                          "event_id": event_id, "session_id": str(uuid.uuid4()),
                          "inputs": {"question": "Where is my parcel?"},
                          "outputs": {"content": ANSWER}}]})
    assert sent.status_code == 200, sent.text
    token = data_plane_token(inst)
    deadline = time.monotonic() + 30
    while httpx.get(f"{inst.dp_url}/v1/events/{event_id}", timeout=10,
                    headers={"authorization": f"Bearer {token}"}).status_code != 200:
        assert time.monotonic() < deadline, "the seeded event was not stored"
        time.sleep(0.2)
    return event_id


def _set_code(page: Any, label: str, code: str) -> None:
    editor = page.get_by_role("textbox", name=label)
    editor.fill(code)
    expect(editor).to_contain_text('print("checking"')


def test_create_a_python_evaluator_test_it_on_an_event_and_enable_it_online(
        installation: Installation, page: Any) -> None:
    inst = installation
    event_id = _seeded_event(inst)
    name = f"answer_words_{uuid.uuid4().hex[:6]}"
    base = f"{inst.cp_url}/projects/{inst.project_id}/evaluators"

    page.goto(base)
    expect(page.get_by_role("heading", name="Evaluators", level=1)).to_be_visible()
    page.get_by_role("button", name="New evaluator").click()
    page.get_by_label("Name").fill(name)
    expect(page.get_by_label("Type")).to_have_value("python")
    page.get_by_label("Type").select_option("llm")  # a judge: its prompt and model instead
    expect(page.get_by_role("textbox", name="Judge prompt")).to_contain_text("{{outputs}}")
    expect(page.get_by_label("Judge model")).to_be_visible()
    page.get_by_label("Type").select_option("python")
    _set_code(page, "Metric code", CODE)
    axe(page, "new evaluator form")
    shot(page, "evaluators-new")
    page.get_by_role("button", name="Create evaluator").click()

    # The evaluator's page: the code in the editor, not online yet, v1 in the versions.
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    expect(page.get_by_role("textbox", name="Metric code")).to_contain_text("words in the answer")
    expect(page.get_by_text("Not online · no version deployed")).to_be_visible()
    versions = page.get_by_role("table", name="Versions")
    expect(versions.get_by_role("row")).to_have_count(2)  # the header and v1

    # Test on the seeded event, picked from the recent events: the score, the
    # explanation, what it printed.
    recent = page.get_by_label("Recent event")
    expect(recent.locator("option", has_text=event_id[:8])).to_have_count(1)
    recent.select_option(event_id)
    page.get_by_role("button", name="Run test").click()
    result = page.get_by_role("status", name="Test result")
    expect(result.get_by_test_id("test-score")).to_have_text("6")
    expect(result).to_contain_text("words in the answer")
    expect(result).to_contain_text("checking 31 characters")
    expect(result).to_contain_text(event_id)
    axe(page, "evaluator page with a test result")
    shot(page, "evaluator-tested")

    # A draft that raises: its error is shown, nothing is saved.
    editor = page.get_by_role("textbox", name="Metric code")
    editor.fill("def evaluate(event):\n    return 1 / 0\n")
    expect(editor).to_contain_text("1 / 0")
    page.get_by_label("Or paste an event id").fill(event_id)  # the other way to name it
    page.get_by_role("button", name="Run test").click()
    failed = page.get_by_role("status", name="Test result")
    expect(failed).to_contain_text("The evaluator failed on this event")
    expect(failed).to_contain_text("ZeroDivisionError")
    shot(page, "evaluator-test-error")
    expect(versions.get_by_role("row")).to_have_count(2)

    # Back to the working code, saved as v2.
    _set_code(page, "Metric code", CODE)
    page.get_by_label("Version note").fill("prints the length")
    page.get_by_role("button", name="Save as new version").click()
    expect(page.get_by_text("Saved as v2.")).to_be_visible()
    expect(versions.get_by_role("row")).to_have_count(3)
    expect(versions.get_by_role("row", name="v2")).to_contain_text("prints the length")

    # Enable online: 25 % of model events. A version with those settings is made and live.
    page.get_by_label("Run online on new events").check()
    page.get_by_label("Sampling rate (% of events)").fill("25")
    page.get_by_label("Filter on").select_option(label="Event type")
    page.get_by_label("Type", exact=True).last.select_option("model")
    page.get_by_role("button", name="Add filter").click()
    expect(page.get_by_role("list", name="Active filters")).to_contain_text("model")
    page.get_by_role("button", name="Save online settings").click()
    expect(page.get_by_text("Online · v3 · 25 % sampled")).to_be_visible()
    live = versions.get_by_role("row", name="v3")
    expect(live.get_by_text("Live")).to_be_visible()
    expect(live).to_contain_text("25 %")
    expect(page.get_by_label("Run online on new events")).to_be_checked()
    axe(page, "evaluator page, online")
    shot(page, "evaluator-online")

    # Deploy an older version: it becomes the live one.
    page.get_by_role("button", name="Deploy v2").click()
    expect(versions.get_by_role("row", name="v2").get_by_text("Live")).to_be_visible()
    expect(page.get_by_text("Online · v2 · 100 % sampled")).to_be_visible()
    page.get_by_role("button", name="Deploy v3").click()
    expect(page.get_by_text("Online · v3 · 25 % sampled")).to_be_visible()

    # The list shows it online, with its sampling and live version.
    page.goto(base)
    row = page.get_by_role("table", name="Evaluators").get_by_role("row", name=name)
    expect(row).to_contain_text("On · 25 % sampled")
    expect(row).to_contain_text("v3")
    expect(row).to_contain_text("Python metric")
    axe(page, "evaluators list")
    shot(page, "evaluators-list")

    # The control plane holds what the page showed (read with the page's own session).
    listed = page.request.get(f"{inst.cp_url}/v1/projects/{inst.project_id}/evaluators")
    assert listed.status == 200, listed.text()
    mine = next(e for e in listed.json() if e["name"] == name)
    assert mine["enabled"] is True
    assert mine["deployed_version"] == 3
    assert mine["versions"][2]["sampling_pct"] == 25
    assert mine["versions"][2]["filters"]["filterArray"][0]["value"] == "model"


def test_an_unknown_evaluator_shows_an_error_not_a_blank_page(
        installation: Installation, page: Any) -> None:
    page.goto(f"{installation.cp_url}/projects/{installation.project_id}/evaluators/"
              f"{uuid.uuid4()}")
    expect(page.get_by_role("alert")).to_contain_text("Could not open this evaluator")
    expect(page.get_by_role("link", name="← Evaluators")).to_be_visible()
    axe(page, "unknown evaluator")
