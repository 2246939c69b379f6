"""The datasets pages and a span's actions in a real browser (tests/ui/_browser.py: a
served control plane with the built UI, a data plane on another origin, real NATS, chDB and
writer).

The story, each step asserted on the page (and, where it stores something, through the
API): a session sent with the OpenTelemetry SDK; its LLM span gets feedback (shown after a
reload, stored on the event), goes into a new dataset and into an annotation queue; the
dataset shows the datapoint linked to the span, which is edited (invalid JSON stays an
inline error and sends nothing), exported as JSONL and CSV (the files' content checked),
and a JSONL file with one bad line is imported (the error shown, the good lines stored).
Then the datasets list: a dataset created, opened (its empty state) and deleted after a
confirmation. axe-core on every page; screenshots in test-artifacts/ui/.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from _browser import DP_ID, Installation, Traces, axe, data_plane_token, shot
from playwright.sync_api import expect


def _dp(inst: Installation) -> httpx.Client:
    return httpx.Client(base_url=inst.dp_url, timeout=10,
                        headers={"authorization": f"Bearer {data_plane_token(inst)}"})


def _admin_dp(page: Any, inst: Installation) -> httpx.Client:
    """The data plane as the signed-in admin (the API key may not manage queues): a token
    from the control plane with the page's session cookie and CSRF header."""
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "apiary_csrf")
    issued = page.request.post(f"{inst.cp_url}/v1/auth/token", headers={"X-CSRF-Token": csrf},
                               data={"audience": DP_ID, "project_id": inst.project_id})
    assert issued.ok, issued.text()
    return httpx.Client(base_url=inst.dp_url, timeout=10,
                        headers={"authorization": f"Bearer {issued.json()['access_token']}"})


def _wait_for(what: str, probe: Any, timeout: float = 30) -> Any:
    """Poll ``probe`` until it returns something truthy (the writer stores asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _session_events(dp: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    answer = dp.post("/v1/events/export", json={"filters": [
        {"field": "session_id", "operator": "is", "value": session_id, "type": "id"}]})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["events"])


def test_span_feedback_add_to_dataset_and_queue_edit_export_import(
        installation: Installation, page: Any) -> None:
    inst = installation
    tag = uuid.uuid4().hex[:8]
    question, answer = f"What is the code {tag}?", f"The code is {tag}."
    traces = Traces(inst.dp_url, inst.api_key)
    try:
        session_id = traces.session(f"datasets-{tag}", "gold", question, answer)
    finally:
        traces.close()
    with _dp(inst) as dp:
        events = _wait_for("the session", lambda: (e := _session_events(dp, session_id))
                           and len(e) == 3 and e)
        llm = next(e for e in events if e["event_name"] == "openai.chat")
        # An evaluator's score with its explanation, as metrics are stored.
        scored = dp.put(f"/v1/events/{llm['event_id']}", json={"metrics": {
            "relevance": 0.875, "relevance_explanation": f"Answers the question {tag}."}})
        assert scored.status_code == 200, scored.text
        _wait_for("the metrics", lambda: dp.get(f"/v1/events/{llm['event_id']}").json()
                  ["event"].get("metrics", {}).get("relevance") == 0.875)
        queue_name = f"q-{tag}"
        with _admin_dp(page, inst) as admin:
            made = admin.post("/v1/queues", json={"name": queue_name})
            assert made.status_code == 201, made.text

        # The session; the LLM span's detail.
        page.goto(f"{inst.cp_url}/projects/{inst.project_id}/sessions/{session_id}"
                  f"?event={llm['event_id']}")
        detail = page.get_by_role("article")
        expect(detail.get_by_role("heading", name="openai.chat")).to_be_visible()
        expect(detail.get_by_role("list", name="Conversation")).to_contain_text(question)
        metrics = detail.get_by_role("list", name="Metrics")
        expect(metrics.get_by_role("listitem").filter(has_text="relevance")).to_contain_text(
            f"0.875Answers the question {tag}.")

        # Feedback: thumbs up and a comment; stored on the event, shown after a reload.
        feedback = detail.get_by_role("form", name="Add feedback")
        feedback.get_by_role("button", name="Good").click()
        expect(feedback.get_by_role("button", name="Good")).to_have_attribute(
            "aria-pressed", "true")
        feedback.get_by_label("Comment").fill(f"Spot on {tag}")
        feedback.get_by_role("button", name="Save feedback").click()
        expect(feedback.get_by_role("status")).to_have_text("Feedback saved.")
        stored = _wait_for("the feedback", lambda: (
            f := dp.get(f"/v1/events/{llm['event_id']}").json()["event"].get("feedback")
        ) and f.get("comment") == f"Spot on {tag}" and f)
        assert stored["rating"] == 1
        page.reload()
        table = page.get_by_role("table", name="Feedback")
        expect(table).to_contain_text(f"Spot on {tag}")
        expect(table.get_by_role("row", name="rating")).to_contain_text("1")
        expect(detail.get_by_role("button", name="Good")).to_have_attribute(
            "aria-pressed", "true")
        page.get_by_role("list", name="Metrics").scroll_into_view_if_needed()
        shot(page, "datasets-0-span-metrics-feedback")

        # Into an annotation queue.
        to_queue = detail.get_by_role("form", name="Add to annotation queue")
        to_queue.get_by_label("Annotation queue").select_option(label=queue_name)
        to_queue.get_by_role("button", name="Add to queue").click()
        expect(to_queue.get_by_role("status")).to_contain_text(f"Added to {queue_name}.")
        queue_id = made.json()["queue"]["id"]
        with _admin_dp(page, inst) as admin:
            items = admin.get(f"/v1/queues/{queue_id}/items").json()["items"]
        assert [i["event_id"] for i in items] == [llm["event_id"]]

        # Into a new dataset.
        dataset_name = f"from-span-{tag}"
        to_dataset = detail.get_by_role("form", name="Add to dataset")
        to_dataset.get_by_label("Dataset", exact=True).select_option(label="New dataset…")
        to_dataset.get_by_label("New dataset name").fill(dataset_name)
        axe(page, "session with span actions")
        shot(page, "datasets-1-span-actions")
        to_dataset.get_by_role("button", name="Add to dataset").click()
        expect(to_dataset.get_by_role("status")).to_contain_text(f"Added to {dataset_name}.")
        to_dataset.get_by_role("link", name="Open the dataset").click()

        # The dataset: the span's datapoint, linked back to the span.
        expect(page.get_by_role("heading", level=1, name=dataset_name)).to_be_visible()
        points = page.get_by_role("table", name="Datapoints")
        expect(points.get_by_role("row")).to_have_count(2)  # the header and the datapoint
        expect(points).to_contain_text(question)
        expect(points).to_contain_text(answer)
        expect(points.get_by_role("link", name=llm["event_id"][:12])).to_have_attribute(
            "href", f"/projects/{inst.project_id}/sessions/{session_id}"
            f"?event={llm['event_id']}")
        dataset_id = page.url.rsplit("/", 1)[-1]
        axe(page, "dataset")
        shot(page, "datasets-2-dataset")

        # Edit it: invalid JSON is an inline error and sends nothing; valid JSON saves.
        writes: list[str] = []
        page.on("request", lambda r: r.method in ("PUT", "POST") and "/v1/datapoints" in r.url
                and writes.append(r.url))
        page.get_by_role("button", name="Edit datapoint 1").click()
        editor = page.get_by_role("form", name="Edit datapoint")
        editor.get_by_label("Inputs").fill('{"question": "unfinished"')
        editor.get_by_role("button", name="Save datapoint").click()
        expect(editor.get_by_text("Inputs: Not valid JSON")).to_be_visible()
        expect(editor.get_by_label("Inputs")).to_have_attribute("aria-invalid", "true")
        axe(page, "datapoint editor with an error")
        shot(page, "datasets-3-editor-error")
        assert writes == []
        edited = {"question": f"Edited {tag}?", "tier": "gold"}
        editor.get_by_label("Inputs").fill(json.dumps(edited))
        editor.get_by_label("Ground truth").fill(json.dumps({"answer": f"Edited {tag}."}))
        editor.get_by_role("button", name="Save datapoint").click()
        expect(page.get_by_role("status").filter(has_text="Saved the datapoint.")
               ).to_be_visible()
        expect(points).to_contain_text(f"Edited {tag}?")
        assert len(writes) == 1

        # Export JSONL and CSV: the files hold the edited datapoint, linked to the span.
        with page.expect_download() as jsonl_download:
            page.get_by_role("button", name="Export JSONL").click()
        assert jsonl_download.value.suggested_filename == f"{dataset_name}.jsonl"
        lines = [json.loads(line) for line in
                 Path(jsonl_download.value.path()).read_text().splitlines()]
        assert [(r["inputs"], r["ground_truth"], r["linked_event"]) for r in lines] == [
            (edited, {"answer": f"Edited {tag}."}, llm["event_id"])]
        with page.expect_download() as csv_download:
            page.get_by_role("button", name="Export CSV").click()
        assert csv_download.value.suggested_filename == f"{dataset_name}.csv"
        rows = list(csv.DictReader(io.StringIO(Path(csv_download.value.path()).read_text())))
        assert len(rows) == 1
        assert json.loads(rows[0]["inputs"]) == edited
        assert rows[0]["linked_event"] == llm["event_id"]

        # Import a JSONL file with one bad line: the error shown, the good lines stored.
        good = [{"inputs": {"question": f"imported one {tag}"}},
                {"inputs": {"question": f"imported two {tag}"}, "ground_truth": {"a": "2"}}]
        body = (json.dumps(good[0]) + "\n{not json\n" + json.dumps(good[1]) + "\n").encode()
        page.get_by_label("Import a JSONL or CSV file").set_input_files(
            files=[{"name": "more.jsonl", "mimeType": "application/x-ndjson", "buffer": body}])
        expect(page.get_by_role("status").filter(has_text="Imported 2 datapoints")
               ).to_contain_text("1 line not imported")
        expect(page.get_by_role("list", name="Lines not imported")).to_contain_text(
            "Line 2 is not valid JSON")
        expect(points.get_by_role("row")).to_have_count(4)
        expect(points).to_contain_text(f"imported two {tag}")
        with _admin_dp(page, inst) as admin:
            stored_points = admin.get("/v1/datapoints", params={"dataset_id": dataset_id}).json()
        assert [p["inputs"]["question"] for p in stored_points["datapoints"]] == [
            f"Edited {tag}?", f"imported one {tag}", f"imported two {tag}"]

        # A version of the dataset as it is now.
        page.get_by_label("Version message").fill("first cut")
        page.get_by_role("button", name="Save version").click()
        expect(page.get_by_role("status").filter(has_text="Saved version 1.")).to_be_visible()
        expect(page.get_by_role("list", name="Versions")).to_contain_text("first cut")
        axe(page, "dataset after import")
        shot(page, "datasets-4-imported")

        # A new datapoint after the version: the dataset has it, version 1 does not.
        page.get_by_role("button", name="Add datapoint").click()
        creator = page.get_by_role("form", name="New datapoint")
        creator.get_by_label("Inputs").fill(json.dumps({"question": f"added {tag}"}))
        creator.get_by_label("History").fill('{"role": "user"}')
        creator.get_by_role("button", name="Create datapoint").click()
        expect(creator.get_by_text("History: Must be a JSON list")).to_be_visible()
        creator.get_by_label("History").fill('[{"role": "user", "content": "hi"}]')
        creator.get_by_role("button", name="Create datapoint").click()
        expect(page.get_by_role("status").filter(has_text="Added a datapoint.")).to_be_visible()
        expect(points.get_by_role("row")).to_have_count(5)
        with page.expect_download() as version_download:
            page.get_by_role("button", name="Export version 1 as CSV").click()
        assert version_download.value.suggested_filename == f"{dataset_name}-v1.csv"
        frozen = list(csv.DictReader(io.StringIO(
            Path(version_download.value.path()).read_text())))
        assert len(frozen) == 3
        assert f"added {tag}" not in Path(version_download.value.path()).read_text()


def test_datasets_list_create_open_and_delete(installation: Installation, page: Any) -> None:
    inst = installation
    name = f"created-{uuid.uuid4().hex[:8]}"
    page.goto(f"{inst.cp_url}/projects/{inst.project_id}/datasets")
    expect(page.get_by_role("heading", level=1, name="Datasets")).to_be_visible()
    page.get_by_role("button", name="New dataset").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Description", exact=True).fill("Made in the browser test")
    page.get_by_role("button", name="Create dataset").click()

    # The new, empty dataset.
    expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()
    expect(page.get_by_text("No datapoints yet.")).to_be_visible()
    expect(page.get_by_text("Made in the browser test")).to_be_visible()
    axe(page, "empty dataset")
    shot(page, "datasets-5-empty-dataset")

    # The list shows it; delete it after the confirmation.
    page.get_by_role("link", name="Datasets", exact=True).first.click()
    table = page.get_by_role("table", name="Datasets")
    row = table.get_by_role("row").filter(has_text=name)
    expect(row).to_contain_text("Made in the browser test")
    expect(row.get_by_role("cell").nth(2)).to_have_text("0")
    axe(page, "datasets list")
    shot(page, "datasets-6-list")
    row.get_by_role("button", name=f"Delete {name}").click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text(f"Delete the dataset {name}?")
    axe(page, "delete confirmation")
    shot(page, "datasets-7-confirm-delete")
    dialog.get_by_role("button", name="Cancel").click()
    expect(row).to_be_visible()
    row.get_by_role("button", name=f"Delete {name}").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_contain_text(f"Deleted the dataset {name}.")
    expect(table.get_by_role("row").filter(has_text=name)).to_have_count(0)
    with _admin_dp(page, inst) as admin:
        assert admin.get("/v1/datasets", params={"name": name}).json()["datasets"] == []

    # A dataset that does not exist (or is another project's): a message, not a blank page.
    page.goto(f"{inst.cp_url}/projects/{inst.project_id}/datasets/no-such-dataset")
    expect(page.get_by_role("alert")).to_contain_text("does not exist")
