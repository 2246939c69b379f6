"""The read path answers exactly as it did before issue 18's rebuild (old against new).

``tests/fixtures/store/read_differential.json`` holds the answers of the store as it was
before the read queries were rebuilt (commit 21501ac), to every read of
:func:`_read_corpus.reads` over the seeded corpus of :func:`_read_corpus.corpus`: export
pages under every operator and type on every column and nested paths, date ranges, paging
and projections, rejected requests, session lists and session trees. Here the same corpus
goes into a fresh database of the current tree through ``EventStore.insert_events`` and
every answer must be the recorded one. To record them again from another tree (only when a
change of meaning is intended and agreed): ``PYTHONPATH=<tree> .venv/bin/python
tests/store/_read_corpus.py tests/fixtures/store/read_differential.json``.

Each export filter list is also asked of :func:`apiary.store.compile_predicates`, the
Python compiler of the same language (which the writers' online evaluation relies on), over
the newest version of each corpus event: the set of matching events must be the store's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from _read_corpus import (
    GOLDEN,
    PROJECT,
    answer,
    export_filters,
    latest_events,
    load,
    reads,
)

from apiary.store import (
    MAX_EXPORT_LIMIT,
    EmbeddedClickHouse,
    EventStore,
    apply_migrations,
    compile_predicates,
)

READS = reads()
GOLDEN_ANSWERS: list[dict[str, Any]] = orjson.loads(GOLDEN.read_bytes())["answers"]


@pytest.fixture(scope="module", params=["final", "register-observed", "register-loaded"])
def corpus_store(driver: EmbeddedClickHouse,
                 request: pytest.FixtureRequest) -> Iterator[EventStore]:
    """The corpus loaded into a database of its own (dropped afterwards), read three ways:
    with FINAL; without it, the duplicate register having seen every insert; and without
    it, the register loaded from the table after the inserts (as when the owner restarts)."""
    database = f"t_diff_{uuid.uuid4().hex[:8]}"
    apply_migrations(driver, database)
    store = EventStore(driver, database=database)
    if request.param == "register-observed":
        store.track_duplicates(background=False)
    load(store)
    if request.param == "register-loaded":
        store.track_duplicates(background=False)
    if request.param != "final":
        assert store.duplicates is not None
        assert store.duplicates.ready
        # The corpus stores some events more than once: the FINAL-free path is exercised
        # with keys to correct, not only on a project without any.
        assert store.duplicates.marked(PROJECT)
    yield store
    driver.command(f"DROP DATABASE IF EXISTS `{database}`")


def test_the_golden_file_covers_exactly_these_reads() -> None:
    assert [g["name"] for g in GOLDEN_ANSWERS] == [r["name"] for r in READS]
    kinds = {r["kind"] for r in READS}
    assert kinds == {"export", "sessions", "tree"}
    # The recorded answers are not vacuous: most reads find something, some are rejected.
    found = [g for g in GOLDEN_ANSWERS if g["answer"].get("rows")
             or g["answer"].get("tree")]
    assert len(found) > len(READS) // 2
    assert any("error" in g["answer"] for g in GOLDEN_ANSWERS)


@pytest.mark.parametrize(("index", "read"), list(enumerate(READS)),
                         ids=[f"{r['kind']}-{i}" for i, r in enumerate(READS)])
def test_answer_equals_the_recorded_one(corpus_store: EventStore, index: int,
                                        read: dict[str, Any]) -> None:
    expected = GOLDEN_ANSWERS[index]
    assert expected["name"] == read["name"]
    got = answer(corpus_store, PROJECT, read)
    assert got == expected["answer"], read["name"]


FILTER_LISTS = export_filters()
LATEST = latest_events()


@pytest.mark.parametrize("filters", FILTER_LISTS,
                         ids=[f"filters-{i}" for i in range(len(FILTER_LISTS))])
def test_python_predicates_select_what_the_store_exports(
        corpus_store: EventStore, filters: list[dict[str, Any]]) -> None:
    events = LATEST
    assert len(events) < MAX_EXPORT_LIMIT  # one page holds every match
    predicate = compile_predicates(filters)
    expected = {eid for eid, e in events.items() if predicate(e)}
    result = corpus_store.export(PROJECT, {"filters": filters, "limit": MAX_EXPORT_LIMIT,
                                           "projections": ["event_id"]})
    got = {e["event_id"] for e in result["events"]}
    assert result["totalEvents"] == len(got)
    assert got == expected


def test_every_event_shows_once_at_its_newest_version(corpus_store: EventStore) -> None:
    """What the golden answers rest on: versions and redeliveries collapse, and the
    look-alike project's events (same ids, ``metadata.leak``) never show."""
    result = corpus_store.export(PROJECT, {"limit": MAX_EXPORT_LIMIT,
                                           "projections": ["event_id", "metadata", "outputs"]})
    events = {e["event_id"]: e for e in result["events"]}
    assert result["totalEvents"] == len(result["events"]) == len(events) == len(LATEST)
    for event_id, event in events.items():
        assert "leak" not in event["metadata"]
        assert event["metadata"] == LATEST[event_id]["metadata"]
        assert event["outputs"] == LATEST[event_id]["outputs"]


def test_register_reads_answer_exports_without_final(corpus_store: EventStore,
                                                     request: pytest.FixtureRequest) -> None:
    """Runs last on each store: the golden exports above were answered by the path the
    store's mode names (a fallback to FINAL everywhere would pass them vacuously)."""
    reads = corpus_store.export_reads
    if corpus_store.duplicates is None:
        assert reads["without_final"] == 0
        assert reads["final"] > 100
    else:
        # Only the rejected requests and pages too deep for the scan use FINAL.
        assert reads["without_final"] > 100
        assert reads["final"] < reads["without_final"] // 10
