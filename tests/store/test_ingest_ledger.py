"""The ingest ledger's table and statements (apiary/store/_ingest_ledger.py, migration
0010): rows recorded twice count once, a message partly stored and partly dead-lettered
counts as dead-lettered, and the totals name the covered sequences one by one."""

from __future__ import annotations

import pytest

from apiary.errors import StoreRejected
from apiary.store import EventStore, cover_sequences


def _by_sequence(rows: list[dict[str, object]]) -> dict[int, dict[str, object]]:
    return {int(r["sequence"]): r for r in rows}  # type: ignore[call-overload]


def test_cover_sequences_keeps_runs_and_merges_the_smallest_gaps() -> None:
    assert cover_sequences([]) == []
    assert cover_sequences([5, 3, 4, 9, 9]) == [(3, 5), (9, 9)]
    many = [1, 2, 10, 11, 13, 100, 1000]
    covered = cover_sequences(many, limit=3)
    assert covered == [(1, 13), (100, 100), (1000, 1000)]
    assert all(any(lo <= s <= hi for lo, hi in covered) for s in many)
    assert len(cover_sequences(list(range(0, 10_000, 2)))) == 64


def test_a_message_recorded_twice_counts_once(store: EventStore, project: str) -> None:
    rows = [(project, 1, "spans", "stored", 10), (project, 2, "api", "stored", 3)]
    store.record_settled(rows)
    store.record_settled(rows)  # the same insert again (same token): nothing more
    assert store.driver.query_rows(
        "SELECT count() AS n FROM apiary.ingest_ledger WHERE project_id = {p:String}",
        {"p": project})[0]["n"] == 2
    # Recorded again in another insert (a retried flush): its rows collapse on reading.
    store.record_settled([*reversed(rows), (project, 3, "spans", "stored", 4)])
    [spans, api] = sorted(store.ledger_totals(project, []), key=lambda r: str(r["kind"]),
                          reverse=True)
    assert spans == {"project_id": project, "kind": "spans", "dead": False, "sequence": 0,
                     "messages": 2, "stored_rows": 14, "dead_rows": 0}
    assert (api["messages"], api["stored_rows"]) == (1, 3)


def test_partly_dead_lettered_messages_count_as_dead_lettered(
        store: EventStore, project: str) -> None:
    store.record_settled([(project, 7, "spans", "stored", 8), (project, 7, "spans", "dead", 2),
                          (project, 8, "spans", "dead", 0), (project, 9, "spans", "stored", 5)])
    rows = store.ledger_totals(project, [(8, 9)])
    totals = [r for r in rows if r["sequence"] == 0]
    assert totals == [{"project_id": project, "kind": "spans", "dead": True, "sequence": 0,
                       "messages": 1, "stored_rows": 8, "dead_rows": 2}]
    named = _by_sequence([r for r in rows if r["sequence"] != 0])
    assert set(named) == {8, 9}
    assert (named[8]["dead"], named[8]["messages"], named[8]["dead_rows"]) == (True, 1, 0)
    assert (named[9]["dead"], named[9]["stored_rows"]) == (False, 5)


def test_totals_are_per_project(store: EventStore, project: str) -> None:
    other = project + "-other"
    store.record_settled([(project, 1, "spans", "stored", 1), (other, 2, "spans", "stored", 9)])
    mine = store.ledger_totals(project, [])
    assert [(r["project_id"], r["stored_rows"]) for r in mine] == [(project, 1)]
    everyone = {(r["project_id"], r["stored_rows"]) for r in store.ledger_totals(None, [])}
    assert {(project, 1), (other, 9)} <= everyone


@pytest.mark.parametrize("row", [
    ("p", 1, "spans", "lost", 1), ("p", 0, "spans", "dead", 1), ("p", 1, "spans", "stored", -1),
    ("p", 1, "spans", "stored", 2**32),
])
def test_rows_the_ledger_cannot_hold_are_rejected(store: EventStore,
                                                  row: tuple[str, int, str, str, int]) -> None:
    with pytest.raises(StoreRejected):
        store.record_settled([row])
