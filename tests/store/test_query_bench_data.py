"""bench/query's data is what its figures claim (keeps bench/_query_data.py honest).

The benchmark loads millions of events as copies of one Arrow template with rewritten ids
and shifted times; a copy that collided with another, broke a session's tree or left the
30 days would make its figures about different data. Loaded small here, through the same
function, into a store of its own.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from apiary.store import EventStore

BENCH = Path(__file__).resolve().parents[2] / "bench" / "_query_data.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("query_bench_data", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


def _size(node: dict[str, Any]) -> int:
    return 1 + sum(_size(child) for child in node["children"])


def test_template_copies_are_distinct_whole_sessions(fresh_store: EventStore) -> None:
    bench = _bench()
    n = 52_000  # the runs (40k events), then copies of 500 sessions, the last one cut short
    targets = bench.load(fresh_store, n, 7, lambda _line: None, template_sessions=500)
    project = bench.PROJECT
    assert targets.events == n
    assert fresh_store.count_rows(project) == n
    assert fresh_store.count_events(project) == n  # no id is shared between copies
    assert len(targets.runs) == bench.RUNS
    assert all(len(s) == bench.RUN_DATAPOINTS for s in targets.runs.values())

    # Ten-span targets of every copy are whole trees under a session.
    assert len(set(targets.ten_span_sessions)) == len(targets.ten_span_sessions) > 50
    for session_id in targets.ten_span_sessions[::25]:
        tree = fresh_store.session_tree(project, session_id)
        assert tree["event_type"] == "session"
        assert not tree.get("synthetic")
        assert _size(tree) == 10
        (chain,) = tree["children"]
        assert {c["event_type"] for c in chain["children"]} == {"model", "tool"}

    # Sessions average ~10 spans and stay within the 30 days before END_MS.
    listed = fresh_store.list_sessions(project, limit=1000)
    assert 4_500 <= listed["totalSessions"] <= 5_800
    starts = [s["start_time"] for s in listed["sessions"]]
    assert all(bench.END_MS - 30 * bench.DAY <= t < bench.END_MS for t in starts)
    # Copies of one template session share their ids but the first 8 digits: they are
    # neighbours neither in time nor in id order ...
    roots = fresh_store.export(project, {"filters": [
        {"field": "event_type", "operator": "is", "value": "session", "type": "string"}],
        "limit": 10_000, "projections": ["session_id", "start_time"]})["events"]
    assert len(roots) == listed["totalSessions"]
    in_time = [r["session_id"][8:] for r in roots]  # exports come in start_time order
    in_ids = [i[8:] for i in sorted(r["session_id"] for r in roots)]
    assert all(a != b for a, b in itertools.pairwise(in_time))
    assert all(a != b for a, b in itertools.pairwise(in_ids))
    # ... and id order does not follow time order (real ids are random).
    rank = {sid: i for i, sid in enumerate(sorted(r["session_id"] for r in roots))}
    ranks = [rank[r["session_id"]] for r in roots]
    rising = sum(a < b for a, b in itertools.pairwise(ranks))
    assert 0.4 < rising / (len(ranks) - 1) < 0.6

    # The metadata path holds one of the 50 tenants on every event.
    result = fresh_store.export(project, {"filters": [
        {"field": "metadata.app.tenant", "operator": "is", "value": "tenant-7",
         "type": "string"}], "limit": 50, "projections": ["metadata"]})
    assert 0 < result["totalEvents"] < n // 20
    assert {e["metadata"]["app"]["tenant"] for e in result["events"]} == {"tenant-7"}
    model = fresh_store.export(project, {"filters": [
        {"field": "event_type", "operator": "is", "value": "model", "type": "string"}],
        "limit": 5})
    assert all(e["config"]["model"] and len(e["inputs"]["chat_history"][1]["content"]) >= 512
               for e in model["events"])
