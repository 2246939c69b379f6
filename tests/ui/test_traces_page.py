"""The traces page in a real browser: time range, filters on metrics (and the rest of the
filter language), free-text search, server-side sorting, chosen columns that survive a
reload, full session ids, and the empty and error states.

The sessions are seeded over REST (``POST /v1/events/batch``) three days in the past, so
they are outside the default range (the last 24 hours) that other page tests read; every
name carries this run's tag, and nothing here counts what another test may create.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from _browser import Installation, axe, data_plane_token, shot

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Seeded:
    tag: str
    word: str  # a word in one prompt only
    sessions: dict[str, str]  # short name -> session id

    def name(self, short: str) -> str:
        return f"{short}-llm-{self.tag}"


def _seed(inst: Installation) -> Seeded:
    tag = uuid.uuid4().hex[:8]
    word = f"kumquat{tag}"
    start = time.time() * 1000 - 3 * DAY_MS
    rows = [  # short name, latency (ms), accuracy, rating, cost, tokens
        ("alpha", 1200.0, 0.95, 5, 0.004, 420),
        ("beta", 300.0, 0.40, 2, 0.001, 90),
        ("gamma", 2500.0, 0.70, 4, 0.009, 1300),
    ]
    events: list[dict[str, Any]] = []
    sessions = {}
    for i, (short, latency, accuracy, rating, cost, tokens) in enumerate(rows):
        sid = str(uuid.uuid4())
        sessions[short] = sid
        t0 = start + i * 60_000
        prompt = f"Tell me about {word}s" if short == "alpha" else f"Tell me about {short} things"
        events.append({"event_type": "session", "event_id": sid, "session_id": sid,
                       "event_name": f"{short}-session-{tag}", "start_time": t0,
                       "duration": latency + 50, "inputs": {"question": prompt},
                       "metadata": {"ui_run": tag}})
        events.append({"event_type": "model", "session_id": sid, "parent_id": sid,
                       "event_name": f"{short}-llm-{tag}", "start_time": t0 + 10,
                       "duration": latency, "inputs": {"prompt": prompt},
                       "outputs": {"content": f"An answer about {short}."},
                       "config": {"model": "gpt-4o-mini", "provider": "openai"},
                       "metadata": {"ui_run": tag, "cost": cost, "total_tokens": tokens},
                       "metrics": {"accuracy": accuracy}, "feedback": {"rating": rating}})
    sent = httpx.post(f"{inst.dp_url}/v1/events/batch", json={"events": events},
                      headers={"authorization": f"Bearer {inst.api_key}"}, timeout=30)
    assert sent.status_code == 200, sent.text
    token = data_plane_token(inst)
    deadline = time.monotonic() + 30
    while True:  # stored (the writer flushes in the background)
        got = httpx.post(f"{inst.dp_url}/v1/events/export", headers={
            "authorization": f"Bearer {token}"}, json={"filters": [
                {"field": "metadata.ui_run", "operator": "is", "value": tag}]}, timeout=10)
        if got.status_code == 200 and got.json()["totalEvents"] >= 6:
            return Seeded(tag, word, sessions)
        assert time.monotonic() < deadline, got.text
        time.sleep(0.2)


@pytest.fixture(scope="module")
def seeded(installation: Installation) -> Seeded:
    return _seed(installation)


def _traces(inst: Installation, query: str = "") -> str:
    return f"{inst.cp_url}/projects/{inst.project_id}/traces{'?' + query if query else ''}"


def _run_filter(seeded: Seeded, *more: dict[str, Any]) -> str:
    filters = [{"field": "metadata.ui_run", "operator": "is", "value": seeded.tag,
                "type": "string"}, *more]
    return quote(json.dumps(filters))


def test_range_full_ids_metric_filter_and_sort_by_latency(
        page: Any, installation: Installation, seeded: Seeded) -> None:
    from playwright.sync_api import expect

    inst = installation
    alpha = seeded.sessions["alpha"]
    # The default range (the last 24 hours) leaves the three-day-old sessions out.
    page.goto(_traces(inst))
    sessions = page.get_by_role("table", name="Sessions")
    expect(sessions).to_be_visible()
    expect(sessions.get_by_role("link", name=f"alpha-session-{seeded.tag}")).to_have_count(0)
    page.get_by_label("Time range").select_option("7d")
    expect(page).to_have_url(re.compile(r"range=7d"))
    link = sessions.get_by_role("link", name=f"alpha-session-{seeded.tag}")
    expect(link).to_be_visible()
    # The session id in full (cut by CSS only), with the whole id as its tooltip.
    id_cell = sessions.get_by_role("cell", name=alpha, exact=True)
    expect(id_cell).to_be_visible()
    expect(id_cell.locator("code")).to_have_attribute("title", alpha)
    axe(page, "traces, last 7 days")
    shot(page, "traces-1-sessions-7d")

    # Filter on this run, then on a metric value: only the accurate answer remains.
    page.get_by_label("Filter on").select_option("metadata")
    page.get_by_label("Metadata path").fill("ui_run")
    page.get_by_label("Operator").select_option("is")
    page.get_by_label("Value").fill(seeded.tag)
    page.get_by_role("button", name="Add filter").click()
    events = page.get_by_role("table", name="Events")
    expect(events.get_by_role("row")).to_have_count(7)  # header + this run's 6 events
    page.get_by_label("Filter on").select_option("metrics")
    page.get_by_label("Metric name").fill("accuracy")
    page.get_by_label("Operator").select_option("greater than")
    page.get_by_label("Value").fill("0.8")
    page.get_by_role("button", name="Add filter").click()
    expect(page.get_by_role("list", name="Active filters")).to_contain_text(
        "metrics.accuracy greater than 0.8")
    expect(events.get_by_role("row")).to_have_count(2)
    expect(events.get_by_role("link", name=seeded.name("alpha"))).to_be_visible()
    expect(events.get_by_role("cell", name="gpt-4o-mini", exact=True)).to_be_visible()
    axe(page, "traces, metric filter")
    shot(page, "traces-2-metric-filter")

    # Swap the metric filter for the model calls; sort by latency, then the other way.
    page.get_by_role("button", name="Remove filter: metrics.accuracy greater than 0.8").click()
    page.get_by_label("Filter on").select_option("event_type")
    page.get_by_role("region", name="Filters").get_by_label("Type").select_option("model")
    page.get_by_role("button", name="Add filter").click()
    expect(events.get_by_role("row")).to_have_count(4)
    names = events.locator("tbody tr td:nth-child(2)")
    page.get_by_role("button", name="Latency", exact=True).click()
    expect(events.get_by_role("columnheader", name="Latency")).to_have_attribute(
        "aria-sort", "descending")
    expect(names).to_have_text([seeded.name("gamma"), seeded.name("alpha"),
                                seeded.name("beta")])
    expect(page).to_have_url(re.compile(r"sort=duration(%3A|:)desc"))
    page.get_by_role("button", name="Latency", exact=True).click()
    expect(events.get_by_role("columnheader", name="Latency")).to_have_attribute(
        "aria-sort", "ascending")
    expect(names).to_have_text([seeded.name("beta"), seeded.name("alpha"),
                                seeded.name("gamma")])
    page.get_by_role("button", name="Cost", exact=True).click()
    expect(names).to_have_text([seeded.name("gamma"), seeded.name("alpha"),
                                seeded.name("beta")])
    axe(page, "traces, sorted events")
    shot(page, "traces-3-sorted-by-latency")

    # Sessions sort too (server-side): longest first.
    page.goto(_traces(inst, "range=7d&sort=duration:desc"))
    expect(sessions.get_by_role("columnheader", name="Duration")).to_have_attribute(
        "aria-sort", "descending")
    expect(sessions.get_by_role("link", name=f"gamma-session-{seeded.tag}")).to_be_visible()
    rows = sessions.locator("tbody tr")
    order = [rows.nth(i).inner_text() for i in range(rows.count())]
    mine = [next(s for s in ("alpha", "beta", "gamma") if f"{s}-session-{seeded.tag}" in r)
            for r in order if seeded.tag in r]
    assert mine == ["gamma", "alpha", "beta"], order


def test_a_chosen_column_survives_a_reload(page: Any, installation: Installation,
                                           seeded: Seeded) -> None:
    from playwright.sync_api import expect

    page.goto(_traces(installation, f"range=7d&f={_run_filter(seeded)}"))
    events = page.get_by_role("table", name="Events")
    expect(events.get_by_role("row")).to_have_count(7)
    expect(events.get_by_role("columnheader", name="metrics.accuracy")).to_have_count(0)
    page.get_by_text("Columns", exact=True).click()
    page.get_by_label("metrics.accuracy").check()
    page.get_by_label("Model", exact=True).uncheck()
    expect(events.get_by_role("columnheader", name="metrics.accuracy")).to_be_visible()
    expect(events.get_by_role("cell", name="0.95", exact=True)).to_be_visible()
    axe(page, "traces, column chooser")
    shot(page, "traces-4-column-chooser")
    page.get_by_text("Columns", exact=True).click()  # closes the chooser
    expect(page.get_by_label("metrics.accuracy")).to_be_hidden()
    shot(page, "traces-4-columns")
    page.reload()
    expect(events.get_by_role("columnheader", name="metrics.accuracy")).to_be_visible()
    expect(events.get_by_role("cell", name="0.95", exact=True)).to_be_visible()
    expect(events.get_by_role("columnheader", name="Model")).to_have_count(0)
    expect(events.get_by_role("columnheader", name="Latency")).to_be_visible()


def test_search_finds_a_word_in_one_prompt(page: Any, installation: Installation,
                                           seeded: Seeded) -> None:
    from playwright.sync_api import expect

    page.goto(_traces(installation, "range=7d"))
    page.get_by_label("Search names, inputs and outputs").fill(seeded.word.upper())
    page.get_by_role("button", name="Search", exact=True).click()
    events = page.get_by_role("table", name="Events")
    # The alpha session event and its model call both carry the prompt; nothing else.
    expect(events.get_by_role("row")).to_have_count(3)
    expect(events.get_by_role("link", name=seeded.name("alpha"))).to_be_visible()
    expect(events.get_by_role("link", name=f"alpha-session-{seeded.tag}")).to_be_visible()
    expect(events.get_by_role("link", name=seeded.name("beta"))).to_have_count(0)
    expect(page).to_have_url(re.compile(f"q={seeded.word.upper()}"))
    axe(page, "traces, search")
    shot(page, "traces-5-search")
    page.get_by_role("button", name="Clear search").click()
    expect(page.get_by_role("table", name="Sessions")).to_be_visible()


def test_empty_and_error_states(page: Any, installation: Installation) -> None:
    from playwright.sync_api import expect

    # A custom range in which nothing happened: how to send a trace.
    page.goto(_traces(installation, "range=custom&from=0&to=60000"))
    sessions = page.get_by_role("table", name="Sessions")
    expect(sessions).to_contain_text("No sessions in this time range")
    expect(sessions).to_contain_text("/v1/traces")
    expect(page.get_by_label("From")).to_be_visible()
    expect(page.get_by_label("To", exact=True)).to_be_visible()
    axe(page, "traces, empty")
    shot(page, "traces-6-empty")

    # A filter the API refuses: its message, never a blank page.
    bad = quote(json.dumps([{"field": "bogus.path", "operator": "is", "value": "x"}]))
    page.goto(_traces(installation, f"range=7d&f={bad}"))
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("could not be loaded")
    expect(alert).to_contain_text("bogus")
    expect(page.get_by_role("button", name="Add filter")).to_be_visible()
    axe(page, "traces, API error")
    shot(page, "traces-7-error")
