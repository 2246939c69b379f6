"""The Review pages in a real browser (tests/ui/_browser.py's installation): annotation
queues and the item view.

Two sessions are sent with the OpenTelemetry SDK under a metadata value of this test's
own; a queue is created on the page with three criteria (a 1-5 rating, a label from a
list, free text) and rules matching those sessions' LLM calls, and filled from them
("Fill now"). On the queue's page one item is scored with the keyboard only (4, Enter),
the other with the mouse (its rating, a label, a note typed in the text area, where the
shortcut keys are just text); the progress bar moves each time, the queue ends in its
finished state, and the scores are read back through the data plane's API: on the items
and as the events' feedback. The shortcuts' help, going back to a scored item, and a
queue the project does not have (the API's 404 as a message). axe-core and a screenshot
on each page.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
from _browser import DP_ID, Installation, Traces, axe, data_plane_token, shot


def _dp(inst: Installation, method: str, path: str, token: str | None = None,
        **kwargs: Any) -> Any:
    """A data-plane call with ``token``, else with the project key's (events only)."""
    answer = httpx.request(method, f"{inst.dp_url}{path}", timeout=10, headers={
        "authorization": f"Bearer {token or data_plane_token(inst)}"}, **kwargs)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _admin_token(page: Any, inst: Installation) -> str:
    """A data-plane token of the signed-in admin (the page's cookie and CSRF header), who
    may read queues, as the app itself obtains it."""
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "apiary_csrf")
    issued = page.request.post(f"{inst.cp_url}/v1/auth/token", headers={"X-CSRF-Token": csrf},
                               data={"audience": DP_ID, "project_id": inst.project_id})
    assert issued.ok, issued.text()
    return str(issued.json()["access_token"])


def _llm_events(inst: Installation, tier: str, count: int) -> list[str]:
    """The ids of the LLM calls of the sessions sent under ``tier``, once all are stored."""
    deadline = time.monotonic() + 30
    while True:
        found = _dp(inst, "POST", "/v1/events/export", json={"filters": [
            {"field": "metadata.customer_tier", "operator": "is", "value": tier,
             "type": "string"},
            {"field": "event_type", "operator": "is", "value": "model", "type": "string"}]})
        if len(found["events"]) >= count:
            return [e["event_id"] for e in found["events"]]
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


def _progress(page: Any, done: int, total: int) -> None:
    from playwright.sync_api import expect

    bar = page.get_by_role("progressbar", name="Queue progress")
    expect(bar).to_have_attribute("aria-valuenow", str(done))
    expect(bar).to_have_attribute("aria-valuemax", str(total))
    expect(page.get_by_text(f"{done} of {total} reviewed")).to_be_visible()


def test_create_a_queue_fill_it_and_score_with_keyboard_and_mouse(
        installation: Installation, page: Any) -> None:
    from playwright.sync_api import expect

    inst = installation
    suffix = uuid.uuid4().hex[:8]
    tier = f"review-{suffix}"
    questions = {"Can I change my delivery address?": "Yes, until it ships.",
                 "Do you ship to Norway?": "Yes, in five to seven days."}
    traces = Traces(inst.dp_url, inst.api_key)
    try:
        for question, answer in questions.items():
            traces.session(f"review-chat-{suffix}", tier, question, answer)
    finally:
        traces.close()
    events = _llm_events(inst, tier, 2)

    # The queues list; a new queue with three criteria and rules.
    page.goto(f"{inst.cp_url}/projects/{inst.project_id}/review")
    expect(page.get_by_role("heading", name="Review", level=1)).to_be_visible()
    expect(page.get_by_role("table", name="Annotation queues")).to_be_visible()
    page.get_by_role("button", name="New queue").click()
    form = page.get_by_role("region", name="New annotation queue")
    name = f"support-answers-{suffix}"
    form.get_by_label("Name", exact=True).fill(name)
    form.get_by_label("Description (optional)").fill("Are the support answers right?")
    form.get_by_label("Criterion 1 name").fill("Quality")
    form.get_by_role("button", name="Add criterion").click()
    form.get_by_label("Criterion 2 name").fill("Tone")
    form.get_by_label("Criterion 2 kind").select_option("category")
    form.get_by_label("Criterion 2 labels").fill("formal, casual")
    form.get_by_role("button", name="Add criterion").click()
    form.get_by_label("Criterion 3 name").fill("Notes")
    expect(form.get_by_label("Criterion 3 kind")).to_have_value("text")
    # Rules: this test's LLM calls.
    form.get_by_label("Metadata path").fill("customer_tier")
    form.get_by_label("Value").fill(tier)
    form.get_by_role("button", name="Add filter").click()
    form.get_by_label("Filter on").select_option("event_type")
    form.get_by_label("Type", exact=True).select_option("model")
    form.get_by_role("button", name="Add filter").click()
    expect(form.get_by_role("list", name="Active filters").get_by_role("listitem")).to_have_count(2)
    axe(page, "new queue form")
    shot(page, "review-1-new-queue")
    form.get_by_role("button", name="Create queue").click()

    expect(page.get_by_role("status").filter(has_text=f"Queue {name} created.")).to_be_visible()
    row = page.get_by_role("table", name="Annotation queues").get_by_role("row").filter(
        has_text=name)
    expect(row).to_contain_text("Quality (1\u20135) · Tone (formal/casual) · Notes (text)")
    expect(row).to_contain_text(f"metadata.customer_tier is \"{tier}\"")
    row.get_by_role("button", name=f"Fill now: {name}").click()
    expect(page.get_by_role("status").filter(has_text=f"{name}: ")).to_contain_text(
        re.compile(r"\d+ events? added from its rules"))
    expect(row.get_by_role("progressbar", name=f"Progress of {name}")).to_have_attribute(
        "aria-valuemax", "2")
    expect(row).to_contain_text("0 of 2 reviewed")
    axe(page, "queues list")
    shot(page, "review-2-queues")

    # The queue: the first item's event as a conversation, and the scoring form.
    row.get_by_role("link", name=f"Review {name}").click()
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    queue_id = page.url.rstrip("/").split("/")[-1]
    _progress(page, 0, 2)
    conversation = page.get_by_role("list", name="Conversation")
    expect(conversation).to_contain_text(re.compile("|".join(map(re.escape, questions))))
    first = next(q for q in questions if q in conversation.inner_text())
    second = next(q for q in questions if q != first)
    expect(conversation).to_contain_text(questions[first])
    form = page.get_by_role("form", name="Score")
    expect(form.get_by_role("button", name="Submit score")).to_be_disabled()
    # A reload opens the item this reviewer claimed, not another one.
    page.reload()
    expect(conversation).to_contain_text(first)
    _progress(page, 0, 2)
    axe(page, "queue item")
    shot(page, "review-3-item")

    # The shortcuts' help: ? opens it, Escape closes it.
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_contain_text("Skip this item")
    axe(page, "shortcuts")
    shot(page, "review-4-shortcuts")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # Scored with the keyboard alone: 4, then Enter.
    page.keyboard.press("4")
    expect(form.get_by_role("radio", name="4")).to_be_checked()
    page.keyboard.press("Enter")
    _progress(page, 1, 2)
    expect(conversation).to_contain_text(second)
    expect(page.get_by_text("Item 2 of this visit")).to_be_visible()

    # Scored with the mouse; the text area takes s, j, k and digits as text.
    form.get_by_role("radio", name="2").click()
    expect(form.get_by_role("radio", name="2")).to_be_checked()
    form.get_by_role("radio", name="casual").check()
    form.get_by_label("Notes").fill("")
    form.get_by_label("Notes").press_sequentially("skip 5 jokes")
    expect(form.get_by_label("Notes")).to_have_value("skip 5 jokes")
    expect(form.get_by_role("radio", name="2")).to_be_checked()  # 5 was text, not a rating
    _progress(page, 1, 2)  # s was text, not a skip
    form.get_by_role("button", name="Submit score").click()

    # The finished state; back to the first item, scored.
    _progress(page, 2, 2)
    expect(page.get_by_role("heading", name="All done")).to_be_visible()
    expect(page.get_by_text("Every item in this queue is reviewed (2 of 2).")).to_be_visible()
    axe(page, "queue finished")
    shot(page, "review-5-done")
    page.keyboard.press("k")
    page.keyboard.press("k")
    expect(page.get_by_text("Item 1 of this visit")).to_be_visible()
    expect(page.get_by_text("Scored", exact=True)).to_be_visible()
    expect(conversation).to_contain_text(first)
    expect(form.get_by_role("radio", name="4")).to_be_checked()
    expect(form.get_by_role("button", name="Update score")).to_be_enabled()

    # Stored: on the queue's items, and as the events' feedback.
    items = _dp(inst, "GET", f"/v1/queues/{queue_id}/items", _admin_token(page, inst))[
        "items"]
    by_event = {i["event_id"]: i for i in items}
    assert set(by_event) == set(events)
    assert all(i["status"] == "completed" for i in items), items
    feedback = sorted((i["feedback"] for i in items), key=lambda f: f["quality"])
    assert feedback == [{"quality": 2, "tone": "casual", "notes": "skip 5 jokes"},
                        {"quality": 4}]
    for event_id, item in by_event.items():
        deadline = time.monotonic() + 30
        while True:
            event = _dp(inst, "GET", f"/v1/events/{event_id}")["event"]
            if event.get("feedback") == item["feedback"]:
                break
            assert time.monotonic() < deadline, event
            time.sleep(0.2)


def test_thumbs_and_skip_with_the_keyboard(installation: Installation, page: Any) -> None:
    """A queue made through the API with a thumbs criterion: u then Enter scores the
    first item, s skips the second; both count as done."""
    from playwright.sync_api import expect

    inst = installation
    suffix = uuid.uuid4().hex[:8]
    tier = f"thumbs-{suffix}"
    traces = Traces(inst.dp_url, inst.api_key)
    try:
        traces.session(f"thumbs-a-{suffix}", tier, "Is it raining?", "No.")
        traces.session(f"thumbs-b-{suffix}", tier, "Is it sunny?", "Yes.")
    finally:
        traces.close()
    events = _llm_events(inst, tier, 2)
    token = _admin_token(page, inst)
    answer = httpx.post(f"{inst.dp_url}/v1/queues", timeout=10, headers={
        "authorization": f"Bearer {token}"}, json={
        "name": f"thumbs-{suffix}", "event_ids": events,
        "criteria": [{"key": "helpful", "kind": "thumbs", "label": "Helpful"}]})
    assert answer.status_code == 201, answer.text
    queue_id = answer.json()["queue"]["id"]

    page.goto(f"{inst.cp_url}/projects/{inst.project_id}/review/{queue_id}")
    _progress(page, 0, 2)
    form = page.get_by_role("form", name="Score")
    expect(form.get_by_role("group", name="Helpful")).to_be_visible()
    expect(page.get_by_role("list", name="Conversation")).to_be_visible()
    page.keyboard.press("j")  # the current item is not scored yet: it stays
    expect(page.get_by_text("Item 1 of this visit")).to_be_visible()
    page.keyboard.press("u")
    expect(form.get_by_role("radio", name="Up")).to_be_checked()
    page.keyboard.press("Enter")
    _progress(page, 1, 2)
    expect(page.get_by_text("Item 2 of this visit")).to_be_visible()
    expect(form.get_by_role("radio", name="Up")).not_to_be_checked()
    page.keyboard.press("s")
    _progress(page, 2, 2)
    expect(page.get_by_role("heading", name="All done")).to_be_visible()

    items = _dp(inst, "GET", f"/v1/queues/{queue_id}/items", token)["items"]
    assert sorted((i["status"], i["feedback"]) for i in items) == [
        ("completed", {"helpful": True}), ("skipped", None)], items


def test_a_queue_the_project_does_not_have_shows_the_api_404(
        installation: Installation, page: Any) -> None:
    from playwright.sync_api import expect

    inst = installation
    page.goto(f"{inst.cp_url}/projects/{inst.project_id}/review/"
              f"no-such-queue-{uuid.uuid4().hex[:6]}")
    expect(page.get_by_role("alert")).to_contain_text("annotation queue not found")
    expect(page.get_by_role("link", name="Review", exact=True).first).to_be_visible()
    axe(page, "unknown queue")
    shot(page, "review-6-unknown-queue")
