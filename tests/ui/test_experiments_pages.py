"""The experiments pages in a real browser: the runs list, comparing two runs (per-metric
deltas, per-datapoint metric changes and a word-level diff of the outputs, the filter to
regressions), a run's results with links to its sessions, and the API's 404 shown for a
run the project does not have.

Two runs over the same three datapoints are recorded through the data plane's API the
way the HoneyHive SDK's ``evaluate()`` does: ``POST /v1/runs`` (an offline ``EXT-``
dataset), each datapoint's session and its scored step with ``metadata.run_id`` /
``datapoint_id`` / ``dataset_id`` (``POST /v1/events/batch``), then ``PUT /v1/runs/{id}``
closing the run with its session ids. The results the pages show are computed by the data
plane from those stored events.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
from _browser import DP_ID, Installation, axe, data_plane_token, shot
from playwright.sync_api import Page, expect

#: Per datapoint: the base run's (output, accuracy, exact, conciseness), then the new run's.
BASE = {
    "1": ("The capital of France is Lyon.", 0.2, False, 0.9),
    "2": ("Berlin is the capital of Germany.", 0.8, True, 0.9),
    "3": ("Rome is the capital of Italy.", 0.5, True, 0.9),
}
NEW = {
    "1": ("The capital of France is Paris.", 1.0, True, 0.9),
    "2": ("Bonn is the capital of Germany.", 0.5, False, 0.0),
    "3": ("Rome is the capital of Italy.", 0.6, True, 0.9),
}
#: The run's own pass rules (they win over any metric definition another test makes).
RANGES = {"accuracy": {"min": 0.5}, "exact": {"pass_when": True}, "conciseness": {"min": 0}}


def _record_run(inst: Installation, token: str, name: str, suffix: str,
                rows: dict[str, tuple[str, float, bool, float]]) -> tuple[str, dict[str, str]]:
    """One run as evaluate() records it; its id and its session per datapoint."""
    auth = {"authorization": f"Bearer {token}"}
    run_id = str(uuid.uuid4())
    dataset = f"EXT-{suffix}"
    with httpx.Client(base_url=inst.dp_url, headers=auth, timeout=30) as dp:
        opened = dp.post("/v1/runs", json={
            "run_id": run_id, "name": name, "status": "pending", "dataset_id": dataset,
            "event_ids": [], "configuration": {}, "metadata": {}, "passing_ranges": RANGES})
        assert opened.status_code == 200, opened.text
        sessions: dict[str, str] = {}
        events: list[dict[str, Any]] = []
        # Three days ago: outside the traces page's default range (the last 24 hours),
        # where other tests of the shared installation count their own sessions.
        start = (time.time() - 3 * 86_400) * 1000
        for n, (key, (output, accuracy, exact, concise)) in enumerate(rows.items()):
            session = str(uuid.uuid4())
            datapoint = f"dp-{suffix}-{key}"
            sessions[datapoint] = session
            meta = {"run_id": run_id, "dataset_id": dataset, "datapoint_id": datapoint}
            question = {"question": f"Question {key} of {suffix}"}
            events += [
                {"event_type": "session", "event_id": session, "session_id": session,
                 "event_name": name, "source": "evaluation", "metadata": meta,
                 "inputs": question, "outputs": {"answer": output},
                 "start_time": start + n * 10, "duration": 5},
                {"event_type": "chain", "session_id": session, "parent_id": session,
                 "event_name": "answer", "source": "evaluation", "metadata": meta,
                 "inputs": question, "outputs": {"answer": output},
                 "metrics": {"accuracy": accuracy, "exact": exact, "conciseness": concise},
                 "start_time": start + n * 10 + 1, "duration": 3},
            ]
        sent = dp.post("/v1/events/batch", json={"events": events})
        assert sent.status_code == 200, sent.text
        closed = dp.put(f"/v1/runs/{run_id}", json={
            "status": "completed", "event_ids": list(sessions.values())})
        assert closed.status_code == 200, closed.text
        # The results come from the stored events: wait until the writer stored them all.
        deadline = time.monotonic() + 30
        while True:
            result = dp.get(f"/v1/runs/{run_id}/result")
            assert result.status_code == 200, result.text
            body = result.json()
            scored = [d for d in body["datapoints"] if d["metrics"]]
            if len(scored) == len(rows):
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.2)
    return run_id, sessions


def _row(table: Any, text: str) -> Any:
    return table.get_by_role("row").filter(has=table.page.get_by_role(
        "rowheader", name=text, exact=True))


def test_compare_two_runs_then_read_a_run(installation: Installation, page: Page) -> None:
    inst = installation
    suffix = uuid.uuid4().hex[:6]
    token = data_plane_token(inst)
    base_name, new_name = f"baseline-{suffix}", f"candidate-{suffix}"
    base_id, base_sessions = _record_run(inst, token, base_name, suffix, BASE)
    new_id, _ = _record_run(inst, token, new_name, suffix, NEW)
    dp1, dp2, dp3 = (f"dp-{suffix}-{k}" for k in "123")
    project = f"{inst.cp_url}/projects/{inst.project_id}"

    # The runs list: both runs with their dataset, status, datapoints and averages.
    page.goto(f"{project}/experiments")
    expect(page.get_by_role("heading", name="Experiments", level=1)).to_be_visible()
    runs = page.get_by_role("table", name="Experiment runs")
    base_row = runs.get_by_role("row").filter(has=page.get_by_role("link", name=base_name))
    new_row = runs.get_by_role("row").filter(has=page.get_by_role("link", name=new_name))
    expect(base_row).to_contain_text(f"EXT-{suffix}")
    expect(base_row).to_contain_text("completed")
    expect(base_row.get_by_role("cell").nth(4)).to_have_text("3")
    expect(base_row).to_contain_text("accuracy 0.5")
    expect(new_row).to_contain_text("accuracy 0.7")
    expect(new_row).to_contain_text("conciseness 0.6")
    compare = page.get_by_role("button", name="Compare", exact=True)
    expect(compare).to_be_disabled()
    axe(page, "experiments")
    shot(page, "experiments-1-runs")

    # Select the two (the newer first): the older one is the base.
    page.get_by_role("checkbox", name=f"Select run {new_name}").check()
    page.get_by_role("checkbox", name=f"Select run {base_name}").check()
    expect(page.get_by_text(f"Compare “{new_name}” and “{base_name}”")).to_be_visible()
    compare.click()
    expect(page).to_have_url(re.compile(
        rf"/experiments/compare\?base={base_id}&new={new_id}$"))
    expect(page.get_by_role("heading", name="Compare runs")).to_be_visible()

    # Per-metric deltas: the direction in words as well as in color.
    deltas = page.get_by_role("table", name="Metric deltas")
    accuracy = _row(deltas, "accuracy")
    expect(accuracy).to_contain_text("0.5")
    expect(accuracy).to_contain_text("0.7")
    expect(accuracy).to_contain_text("+0.2")
    expect(accuracy).to_contain_text("(+40%)")
    expect(accuracy).to_contain_text("Improved")
    concise = _row(deltas, "conciseness")
    expect(concise).to_contain_text("\u22120.3")
    expect(concise).to_contain_text("Regressed")
    expect(_row(deltas, "exact")).to_contain_text("Unchanged")

    # Per datapoint: the metric changes and the outputs diffed word by word.
    cards = page.get_by_role("list", name="Datapoint comparisons").get_by_role("listitem")
    first = cards.filter(has=page.get_by_role("heading", name=f"Datapoint {dp1}"))
    changes = first.get_by_role("table", name=f"Metric changes of {dp1}")
    expect(_row(changes, "accuracy")).to_contain_text("+0.8")
    expect(_row(changes, "exact")).to_contain_text("Improved")
    diff = first.get_by_role("group", name=f"Output diff of {dp1}")
    expect(diff.locator("del")).to_have_text("Lyon")
    expect(diff.locator("ins")).to_have_text("Paris")
    expect(first.get_by_text("Inputs:")).to_contain_text(f"Question 1 of {suffix}")
    second = cards.filter(has=page.get_by_role("heading", name=f"Datapoint {dp2}"))
    second_diff = second.get_by_role("group", name=f"Output diff of {dp2}")
    expect(second_diff.locator("ins")).to_have_text("Bonn")
    expect(second_diff.locator("del")).to_have_text("Berlin")
    expect(_row(second.get_by_role("table"), "accuracy")).to_contain_text("Regressed")
    third = cards.filter(has=page.get_by_role("heading", name=f"Datapoint {dp3}"))
    expect(third).to_contain_text("same output")
    expect(third.locator("ins, del")).to_have_count(0)
    expect(page.get_by_text("3 datapoints in both runs · 1 regressed")).to_be_visible()
    axe(page, "compare runs")
    shot(page, "experiments-2-compare")

    # Regressions only: dp2 lost on every metric; dp1 and dp3 lost on none.
    page.get_by_role("checkbox", name="Regressions only").check()
    expect(page).to_have_url(re.compile(r"only=regressions"))
    expect(page.get_by_text("1 of 3 datapoints regressed")).to_be_visible()
    expect(cards).to_have_count(1)
    expect(cards.first.get_by_role("heading", level=3)).to_have_text(f"Datapoint {dp2}")
    axe(page, "compare runs, regressions only")
    shot(page, "experiments-3-regressions")

    # The base run: summary (pass/fail counts, per-metric averages), results per datapoint.
    page.get_by_role("link", name=base_name).click()
    expect(page.get_by_role("heading", name=base_name, level=1)).to_be_visible()
    cards_summary = page.locator(".xp-cards")
    expect(cards_summary).to_contain_text("Datapoints3")
    expect(cards_summary).to_contain_text("Passed2")
    expect(cards_summary).to_contain_text("Failed1")
    summary = page.get_by_role("table", name="Metric summary")
    expect(_row(summary, "accuracy")).to_contain_text("0.5")
    expect(_row(summary, "accuracy")).to_contain_text("≥ 0.5")
    results = page.get_by_role("table", name="Results per datapoint")
    failing = _row(results, dp1)
    expect(failing).to_contain_text("Failed")
    expect(failing).to_contain_text("The capital of France is Lyon.")
    expect(failing).to_contain_text(f"Question 1 of {suffix}")
    expect(failing).to_contain_text("0.2")
    expect(_row(results, dp2)).to_contain_text("Passed")
    axe(page, "a run")
    shot(page, "experiments-4-run")

    # Each datapoint links to its session.
    failing.get_by_role("link", name=f"Open session of {dp1}").click()
    expect(page).to_have_url(re.compile(rf"/sessions/{base_sessions[dp1]}$"))
    expect(page.get_by_role("heading", name="Session")).to_be_visible()

    # From a run, compare it with another run of the project (the older is the base).
    page.go_back()
    expect(page.get_by_role("heading", name=base_name, level=1)).to_be_visible()
    page.get_by_label("Compare with").select_option(label=new_name)
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page).to_have_url(re.compile(
        rf"/experiments/compare\?base={base_id}&new={new_id}$"))
    expect(_row(page.get_by_role("table", name="Metric deltas"), "accuracy")).to_contain_text(
        "Improved")


def _other_projects_run(inst: Installation, page: Page) -> str:
    """A run in another project of the admin's workspace (made with the signed-in
    browser's session, as the UI would): the page's project must not see it. The project's
    name sorts after the installation's, which stays the workspace's first."""
    cp = inst.cp_url
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "apiary_csrf")
    headers = {"X-CSRF-Token": csrf}
    project = page.request.get(f"{cp}/v1/projects/{inst.project_id}")
    assert project.ok, project.text()
    created = page.request.post(
        f"{cp}/v1/workspaces/{project.json()['workspace_id']}/projects", headers=headers,
        data={"name": f"zz-experiments-other-{uuid.uuid4().hex[:6]}"})
    assert created.status == 201, created.text()
    other = created.json()["id"]
    issued = page.request.post(f"{cp}/v1/auth/token", headers=headers,
                               data={"audience": DP_ID, "project_id": other})
    assert issued.ok, issued.text()
    run_id = str(uuid.uuid4())
    opened = httpx.post(f"{inst.dp_url}/v1/runs", timeout=30, json={
        "run_id": run_id, "name": "another project's run", "dataset_id": "EXT-other"},
        headers={"authorization": f"Bearer {issued.json()['access_token']}"})
    assert opened.status_code == 200, opened.text
    return run_id


def test_another_projects_run_shows_the_api_404(installation: Installation,
                                                page: Page) -> None:
    inst = installation
    project = f"{inst.cp_url}/projects/{inst.project_id}"
    page.goto(f"{project}/experiments")
    expect(page.get_by_role("heading", name="Experiments", level=1)).to_be_visible()
    theirs = _other_projects_run(inst, page)
    ours, _ = _record_run(inst, data_plane_token(inst), f"ours-{uuid.uuid4().hex[:6]}",
                          uuid.uuid4().hex[:6], {"1": BASE["1"]})

    page.goto(f"{project}/experiments/{theirs}")
    expect(page.get_by_role("alert")).to_contain_text("Could not load this run (404)")
    expect(page.get_by_text("another project's run")).to_have_count(0)
    expect(page.get_by_role("link", name="Back to the experiments")).to_be_visible()
    axe(page, "another project's run")
    shot(page, "experiments-5-not-found")

    page.goto(f"{project}/experiments/compare?base={theirs}&new={ours}")
    expect(page.get_by_role("alert")).to_contain_text("Could not load the comparison (404)")
    expect(page.get_by_text("another project's run")).to_have_count(0)

    # The runs list never shows it either; a missing run is the same 404.
    page.goto(f"{project}/experiments")
    expect(page.get_by_role("table", name="Experiment runs")).to_be_visible()
    expect(page.get_by_role("link", name="another project's run")).to_have_count(0)
    page.goto(f"{project}/experiments/{uuid.uuid4()}")
    expect(page.get_by_role("alert")).to_contain_text("Could not load this run (404)")

    page.goto(f"{project}/experiments/compare")
    expect(page.get_by_role("heading", name="Choose two runs")).to_be_visible()
