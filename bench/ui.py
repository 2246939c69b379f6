"""bench/ui: how fast the web UI shows data at 1M events, in a real browser.

Usage: bench/ui [--events 1000000] [--runs 10] [--dir PATH] [--reuse | --copy-from DIR]
                [--ui-dir DIR] [--seed 7] [--json PATH]

Prints, as p50/p95 over ``--runs`` navigations (after one warm-up, the cold one, shown
apart), with Playwright over Debian's ``/usr/bin/chromium`` (headless):

- **traces, first row**: from ``page.goto`` of the project's traces page (``?range=all``:
  the data ends 2025-06-01, so the default last 24 hours would be empty) to the first row
  of the sessions table in the DOM;
- **2,000-span trace**: from ``page.goto`` of a session of 2,000 spans (a root, 39 steps of
  50 leaves, 10 tail spans) to the first row of its tree (the page renders once every page
  of the session's events has arrived, so this is the whole trace loaded and laid out);

and, to tell the API's time from the browser's, for each navigation the browser's own
resource timings of the API calls on the way (``/v1/me``, ``/v1/data-planes``,
``/v1/auth/token``, then the data plane's ``/v1/sessions`` or ``/v1/events/export``
pages) and the same data-plane reads timed from Python over HTTP with a data-plane token.

1. Data: ``--events`` events of bench/query's shape (bench/_query_data.py: 100k sessions of
   ~10 spans per 1M over 30 days) in an embedded chDB directory. ``--dir`` keeps it;
   ``--reuse`` measures the data already in ``--dir``; ``--copy-from DIR`` copies a loaded
   directory (``bench/query --dir DIR``'s, with its targets file) into ``--dir`` (or a
   temporary one) first and leaves ``DIR`` untouched. The 2,000-span session is added to
   the data (once: a rerun with ``--reuse`` finds it).
2. Planes: the control plane (its app, serving the built UI from ``--ui-dir``, default the
   package's build from ``make ui``) with its own SQLite cpdb, and the data plane over that
   chDB directory on another origin (real NATS and writer), each served by uvicorn on
   127.0.0.1 — the harness of the browser tests (tests/_served_planes.py), not ``apiary
   up``: the same two apps and routes over HTTP, without Ray's processes, the chDB owner's
   actor hop and its minutes of start-up on two shared cores (the Ray hop is measured by
   bench/query and docs/benchmarks.md). An admin is bootstrapped; the bench's project
   (``bench-query``, the data's project id) is added to the admin's workspace.
3. Browser: sign in with email and password, then the navigations.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the browser tests' served-planes harness

import httpx  # noqa: E402

from apiary.event import Event, new_event  # noqa: E402
from apiary.store import EmbeddedClickHouse, EventStore, events_to_arrow  # noqa: E402
from bench._query_data import PROJECT, TENANT, Targets, load  # noqa: E402

TARGETS_FILE = "bench-query-targets.json"
CHROMIUM = "/usr/bin/chromium"
ISSUER = "http://cp.bench-ui.test/cp"
DP_ID = "dp-bench-ui"
EMAIL = "admin@bench-ui.test"
BIG_SESSION = str(uuid.UUID(int=0xB16_5E55_1014, version=4))  # the 2,000-span session
BIG_SPANS = 1 + 39 * 51 + 10
WAIT_MS = 120_000
FIRST_SESSION_ROW = "table[aria-label='Sessions'] tbody tr td a"
FIRST_TREE_ROW = "[role='tree'] [role='treeitem']"
API_PATHS = ("/v1/me", "/v1/data-planes", "/v1/auth/token", "/v1/sessions", "/v1/events/export")


def log(message: str) -> None:
    print(message, flush=True)


def pctl(values: list[float]) -> tuple[float, float]:
    """(p50, p95) of ``values`` (p95: the nearest rank)."""
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1,
                                                   round(0.95 * (len(ordered) - 1)))]


# --- data ---------------------------------------------------------------------------------


def big_session(start_ms: float) -> list[Event]:
    """A session of :data:`BIG_SPANS` spans: a root, 39 steps of 50 leaves each, 10 tails
    (the shape of the browser test's 2,000-span session)."""
    events: list[Event] = []
    n = 0

    def span(name: str, parent: str, kind: str, depth: int) -> str:
        nonlocal n
        event_id = str(uuid.UUID(int=(0xB16 << 64) + n, version=4))
        begin = start_ms + n * 2.0
        n += 1
        events.append(new_event(
            event_id=event_id, session_id=BIG_SESSION, parent_id=parent or None,
            event_type=kind, event_name=name, source="bench-ui", start_time=begin,
            end_time=begin + 10.0 + depth, duration=10.0 + depth,
            inputs={"query": f"{name} input"}, outputs={"result": f"{name} output"},
            metadata={"step": depth}))
        return event_id

    root = span("big-run", "", "session", 0)
    for step in range(39):
        parent = span(f"step-{step}", root, "chain", 1)
        for leaf in range(50):
            span(f"leaf-{step}-{leaf}", parent, "tool", 2)
    for tail in range(10):
        span("last-span" if tail == 9 else f"tail-{tail}", root, "tool", 1)
    assert len(events) == BIG_SPANS
    return events


def session_events(store: EventStore, session_id: str) -> int:
    found = store.export(PROJECT, {"filters": [{"field": "session_id", "operator": "is",
                                                "value": session_id, "type": "id"}],
                                   "limit": 1})
    return int(found["totalEvents"])


def prepare_data(args: argparse.Namespace, path: Path) -> tuple[EventStore, Targets]:
    if args.copy_from is not None:
        if any(path.iterdir()):
            raise SystemExit(f"{path} is not empty: --copy-from needs an empty --dir")
        log(f"copying {args.copy_from} to {path}")
        started = time.perf_counter()
        # ClickHouse links its databases and tables into store/ (relative links): copied
        # as links, they point into the copy.
        shutil.copytree(args.copy_from, path, symlinks=True, dirs_exist_ok=True)
        log(f"  copied in {time.perf_counter() - started:.1f} s")
    store = EventStore(EmbeddedClickHouse(path, database="apiary"))
    store.migrate()
    if args.reuse or args.copy_from is not None:
        targets = Targets(**json.loads((path / TARGETS_FILE).read_text()))
        log(f"using {path}: {targets.events:,} events")
    else:
        if store.count_rows(PROJECT):
            raise SystemExit(f"{path} already holds data: pass --reuse or a fresh --dir")
        log(f"loading {args.events:,} events into {path}")
        targets = load(store, args.events, args.seed, log)
        (path / TARGETS_FILE).write_text(json.dumps(targets.__dict__))
    if session_events(store, BIG_SESSION) < BIG_SPANS:
        store.insert_arrow(events_to_arrow(TENANT, 1, big_session(time.time() * 1000 - 3_600_000)))
        log(f"  added the {BIG_SPANS:,}-span session {BIG_SESSION}")
    assert session_events(store, BIG_SESSION) == BIG_SPANS
    return store, targets


# --- planes ---------------------------------------------------------------------------------


@contextmanager
def planes(store: EventStore, ui_dir: Path, work: Path) -> Iterator[tuple[str, str, str]]:
    """(control plane URL, data plane URL, admin password): both planes served, the bench's
    project in the admin's workspace."""
    from _served_planes import served_data_plane
    from _servers import http_server

    from apiary.control import ControlPlane, admin
    from apiary.control.api import create_control_plane_app
    from apiary.control.db import Project
    from apiary.dataplane.auth import control_plane_authenticator
    from apiary.queue import NatsServer
    from apiary.settings import ApiarySettings

    nats = NatsServer(work / "nats")
    nats.start()
    settings = ApiarySettings(data_dir=work / "cp", cp_issuer=ISSUER, data_plane_id=DP_ID,
                              cp_jwks_cache_s=1)
    control_plane = ControlPlane.open(settings)
    try:
        with http_server(create_control_plane_app(control_plane, ui_dir=ui_dir)) as cp_url:
            dp_config = settings.model_copy(update={
                "data_dir": work / "dp", "control_plane_url": cp_url, "jwt_issuer": ISSUER,
                "cors_origins": (cp_url,)})
            with served_data_plane(nats.url, store, dp_config,
                                   control_plane_authenticator) as dp_url:
                boot = admin.bootstrap(settings, admin_email=EMAIL, data_plane_id=DP_ID,
                                       data_plane_url=dp_url, mint_key=False)
                with control_plane.transaction() as db:
                    if db.get(Project, PROJECT) is None:
                        db.add(Project(id=PROJECT, org_id=boot["org_id"],
                                       workspace_id=boot["workspace_id"], name="bench 1M",
                                       created_at=control_plane.now()))
                yield cp_url, dp_url, str(boot["admin_password"])
    finally:
        control_plane.close()
        nats.stop()


# --- measurements -------------------------------------------------------------------------

# Runs in every document before the app (through the debugging protocol, like the tests'
# axe-core: the page's CSP is untouched): the moment each watched selector first matches.
_WATCH_JS = """(() => {
  const selectors = %s;
  window.__firstSeen = {};
  const check = () => {
    for (const s of selectors) {
      if (!(s in window.__firstSeen) && document.querySelector(s)) {
        window.__firstSeen[s] = performance.now();
      }
    }
  };
  new MutationObserver(check).observe(document, {childList: true, subtree: true});
})();"""

_TIMINGS_JS = """([paths, selector]) => {
  const nav = performance.getEntriesByType('navigation')[0];
  const out = {seen: window.__firstSeen[selector], document: nav ? nav.responseEnd : 0,
               script: 0, calls: []};
  for (const e of performance.getEntriesByType('resource')) {
    const path = new URL(e.name).pathname;
    if (path.includes('/assets/') && path.endsWith('.js')) {
      out.script = Math.max(out.script, e.responseEnd);
    }
    if (paths.some((p) => path.endsWith(p))) {
      out.calls.push({path, start: e.startTime, end: e.responseEnd});
    }
  }
  return out;
}"""


def navigate(page: Any, url: str, selector: str) -> dict[str, Any]:
    """One navigation: wall ms from ``goto`` until Playwright sees ``selector``, and the
    page's own clock (ms since navigation start): when the row was inserted (a
    MutationObserver), when the document and the app's script had arrived, and each API
    call's start and end."""
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_selector(selector, state="attached", timeout=WAIT_MS)
    wall = (time.perf_counter() - t0) * 1000.0
    timings = page.evaluate(_TIMINGS_JS, [list(API_PATHS), selector])
    return {"wall": wall, **timings}


def breakdown(runs: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Per API path: (p50 of its total time in flight, p50 of when its last call ended),
    ms since navigation start; when the document, the script and the first row arrived;
    and the first row's time after the last API answer (rendering)."""
    out: dict[str, tuple[float, float]] = {}
    for path in API_PATHS:
        spent, ended = [], []
        for run in runs:
            calls = [c for c in run["calls"] if c["path"].endswith(path)]
            if calls:
                spent.append(sum(c["end"] - c["start"] for c in calls))
                ended.append(max(c["end"] for c in calls))
        if spent:
            out[path] = (statistics.median(spent), statistics.median(ended))
    out["document (HTML) received"] = (0.0, statistics.median(r["document"] for r in runs))
    out["app script received"] = (0.0, statistics.median(r["script"] for r in runs))
    out["first row in the DOM"] = (0.0, statistics.median(r["seen"] for r in runs))
    last = [r["seen"] - max((c["end"] for c in r["calls"]), default=0.0) for r in runs]
    out["first row after the last API answer"] = (statistics.median(last), 0.0)
    return out


def measure(page: Any, name: str, url: str, selector: str, runs: int
            ) -> dict[str, Any]:
    log(f"{name}: 1 warm-up + {runs} runs")
    cold = navigate(page, url, selector)
    log(f"  warm-up (cold cache): {cold['wall']:,.0f} ms (in page {cold['seen']:,.0f} ms)")
    done = []
    for i in range(runs):
        result = navigate(page, url, selector)
        done.append(result)
        log(f"  run {i + 1}/{runs}: {result['wall']:,.0f} ms (in page {result['seen']:,.0f} ms)")
    p50, p95 = pctl([r["wall"] for r in done])
    seen50, seen95 = pctl([r["seen"] for r in done])
    return {"name": name, "p50": p50, "p95": p95, "cold": cold["wall"], "n": runs,
            "in_page_p50": seen50, "in_page_p95": seen95, "breakdown": breakdown(done)}


def timed(call: Callable[[], Any], runs: int) -> tuple[float, float]:
    call()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000.0)
    return pctl(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--events", type=int, default=1_000_000,
                        help="events to load (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=10,
                        help="measured navigations of each page (default 10)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="chDB data directory to use and keep (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the data already in --dir (no load)")
    parser.add_argument("--copy-from", type=Path, default=None,
                        help="copy this loaded directory (bench/query --dir's) first; it is "
                        "left as it is")
    parser.add_argument("--ui-dir", type=Path, default=None,
                        help="the built UI (default: the package's, from `make ui`)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    if args.reuse and args.dir is None:
        parser.error("--reuse needs --dir")
    if args.reuse and args.copy_from is not None:
        parser.error("--reuse and --copy-from exclude each other")
    if args.copy_from is not None and not (args.copy_from / TARGETS_FILE).is_file():
        parser.error(f"{args.copy_from} has no {TARGETS_FILE}: not a bench/query directory")
    from apiary.control.api.routes_ui import UI_DIR
    ui_dir = args.ui_dir or UI_DIR
    if not (ui_dir / "index.html").is_file():
        parser.error(f"{ui_dir} holds no built UI: run `make ui` or pass --ui-dir")
    if not Path(CHROMIUM).exists():
        parser.error(f"{CHROMIUM} is missing: run `make system-deps`")
    report = run(args, ui_dir)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def run(args: argparse.Namespace, ui_dir: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    report: dict[str, Any] = {"command": " ".join(["bench/ui", *sys.argv[1:]]),
                              "date": time.strftime("%Y-%m-%d", time.gmtime()),
                              "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        work = Path(tmp)
        path = args.dir or work / "data"
        path.mkdir(parents=True, exist_ok=True)
        store, targets = prepare_data(args, path)
        report["events"] = targets.events + BIG_SPANS
        try:
            with planes(store, ui_dir, work) as (cp_url, dp_url, password):
                log(f"control plane {cp_url} (UI from {ui_dir}), data plane {dp_url}")
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=CHROMIUM,
                                                 args=["--no-sandbox"])
                    context = browser.new_context(viewport={"width": 1400, "height": 900})
                    context.add_init_script(_WATCH_JS % json.dumps(
                        [FIRST_SESSION_ROW, FIRST_TREE_ROW]))
                    page = context.new_page()
                    page.set_default_timeout(WAIT_MS)
                    page.goto(f"{cp_url}/")
                    page.get_by_label("Email").fill(EMAIL)
                    page.get_by_label("Password").fill(password)
                    page.get_by_role("button", name="Sign in").click()
                    page.wait_for_selector("table[aria-label='Sessions']")
                    log("signed in")
                    project = f"{cp_url}/projects/{PROJECT}"
                    report["pages"] = [
                        measure(page, f"traces page, first row ({targets.events:,} events)",
                                f"{project}/traces?range=all", FIRST_SESSION_ROW, args.runs),
                        measure(page, f"{BIG_SPANS:,}-span trace, first row",
                                f"{project}/sessions/{BIG_SESSION}", FIRST_TREE_ROW,
                                args.runs),
                    ]
                    token = page.evaluate(
                        """async (dp) => {
                          const csrf = document.cookie.split('; ').find((c) =>
                            c.startsWith('apiary_csrf='))?.split('=')[1] ?? '';
                          const r = await fetch('v1/auth/token', {method: 'POST',
                            headers: {'content-type': 'application/json',
                                      'x-csrf-token': decodeURIComponent(csrf)},
                            body: JSON.stringify({audience: dp, project_id: 'bench-query'})});
                          return (await r.json()).access_token;
                        }""", DP_ID)
                    browser.close()
                report["api"] = direct_reads(dp_url, token, args.runs)
                report["load_after"] = os.getloadavg()[0]
        finally:
            store.close()
    return report


def direct_reads(dp_url: str, token: str, runs: int) -> list[dict[str, Any]]:
    """The pages' data-plane reads, from Python over HTTP: the API's share."""
    headers = {"authorization": f"Bearer {token}"}
    out = []
    with httpx.Client(base_url=dp_url, headers=headers, timeout=120) as http:
        def sessions() -> None:
            got = http.get("/v1/sessions", params={"limit": 50, "page": 1})
            assert got.status_code == 200, got.text
            assert got.json()["sessions"], got.text

        def trace() -> None:
            events, cursor = 0, None
            while True:
                body: dict[str, Any] = {"filters": [{"field": "session_id", "operator": "is",
                                                     "value": BIG_SESSION, "type": "id"}],
                                        "limit": 1000}
                if cursor:
                    body["cursor"] = cursor
                got = http.post("/v1/events/export", json=body)
                assert got.status_code == 200, got.text
                page = got.json()
                events += len(page["events"])
                cursor = page.get("next_cursor") if len(page["events"]) == 1000 else None
                if not cursor:
                    break
            assert events == BIG_SPANS, events

        for name, call in (("GET /v1/sessions?limit=50 (the traces page's read)", sessions),
                           (f"POST /v1/events/export, the {BIG_SPANS:,}-span session, "
                            "all pages", trace)):
            p50, p95 = timed(call, runs)
            log(f"  {name}: p50 {p50:,.0f} ms, p95 {p95:,.0f} ms")
            out.append({"name": name, "p50": p50, "p95": p95, "n": runs})
    return out


def print_report(report: dict[str, Any]) -> None:
    print(f"\n{report['events']:,} events, {report['date']}; load average (1 min) "
          f"{report['load_before']:.1f} before, {report['load_after']:.1f} after, on "
          f"{os.cpu_count()} CPUs")
    print("\n| page (navigation → first rendered row) | p50 | p95 | in-page p50 | in-page p95 "
          "| cold (first) |")
    print("|---|---|---|---|---|---|")
    for row in report["pages"]:
        print(f"| {row['name']} | {row['p50']:,.0f} ms | {row['p95']:,.0f} ms | "
              f"{row['in_page_p50']:,.0f} ms | {row['in_page_p95']:,.0f} ms | "
              f"{row['cold']:,.0f} ms |")
    for row in report["pages"]:
        print(f"\n{row['name']}: where the time goes (p50 of the runs, ms since navigation "
              "start)\n\n| step | in flight | done at |\n|---|---|---|")
        for step, (spent, ended) in row["breakdown"].items():
            print(f"| {step} | {f'{spent:,.0f} ms' if spent else ''} | "
                  f"{f'{ended:,.0f} ms' if ended else ''} |")
    print("\n| data-plane read from Python over HTTP | p50 | p95 |\n|---|---|---|")
    for row in report["api"]:
        print(f"| {row['name']} | {row['p50']:,.0f} ms | {row['p95']:,.0f} ms |")


if __name__ == "__main__":
    main()
