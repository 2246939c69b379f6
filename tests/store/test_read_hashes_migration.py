"""Migration 0014 gives the events stored before it their ``key_hash`` and ``attr_hashes``:
the values the register hashes and the filters compare, so reads answer the same across
the upgrade (tests/store/test_duplicates.py covers rows inserted after it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import xxhash
from _migrated import store_before
from factory import many_events, tenant

from apiary.store import (
    EmbeddedClickHouse,
    EventStore,
    apply_migrations,
    events_to_arrow,
)
from apiary.store._attributes import with_attributes
from apiary.store._duplicates import key_hashes

HASHES = "0014"


@pytest.fixture
def old_store(driver: EmbeddedClickHouse) -> Iterator[EventStore]:
    """A database migrated up to the migration before 0014."""
    store = store_before(driver, HASHES)
    yield store
    driver.command(f"DROP DATABASE IF EXISTS `{store.database}`")


def test_rows_stored_before_the_migration_get_the_hashes_of_their_keys_and_pairs(
        old_store: EventStore, driver: EmbeddedClickHouse, project: str) -> None:
    db = f"`{old_store.database}`"
    events = many_events(60, seed=21)
    driver.insert_arrow(f"{old_store.database}.events",
                        with_attributes(events_to_arrow(tenant(project), 1, events)))
    columns = {r["name"] for r in driver.query_rows(f"DESCRIBE TABLE {db}.events")}
    assert "key_hash" not in columns
    assert "attr_hashes" not in columns

    assert apply_migrations(driver, old_store.database) == ["0014_read_hashes"]
    rows = driver.query_rows(
        f"SELECT project_id, session_id, event_id, key_hash, attr_keys, attr_values, "
        f"attr_hashes FROM {db}.events ORDER BY event_id")
    assert len(rows) == 60
    assert [int(r["key_hash"]) for r in rows] == key_hashes(
        [r["project_id"] for r in rows], [r["session_id"] for r in rows],
        [r["event_id"] for r in rows]).tolist()
    pairs = 0
    for r in rows:
        # ClickHouse's xxHash64(k, v) over two strings: each hashed, then combined; the
        # same value as the filter computes for a bound path and value.
        expected = [int(driver.query_rows("SELECT xxHash64({k:String}, {v:String}) AS h",
                                          {"k": k, "v": v})[0]["h"])
                    for k, v in zip(r["attr_keys"][:2], r["attr_values"][:2], strict=True)]
        assert [int(h) for h in r["attr_hashes"][:2]] == expected
        assert len(r["attr_hashes"]) == len(r["attr_keys"])
        pairs += len(expected)
    assert pairs > 60
    # Not the hash of the joined text: no separator can make two pairs one.
    assert int(rows[0]["attr_hashes"][0]) != xxhash.xxh64_intdigest(
        f"{rows[0]['attr_keys'][0]}{rows[0]['attr_values'][0]}".encode())
    # An equality filter on a nested path answers from the hashes as before the upgrade.
    user = events[0]["metadata"]["user_id"]
    got = old_store.export(project, {"filters": [
        {"field": "metadata.user_id", "operator": "is", "value": user, "type": "string"}],
        "limit": 1000, "projections": ["event_id"]})
    assert {e["event_id"] for e in got["events"]} == {
        e["event_id"] for e in events if e["metadata"].get("user_id") == user}
    assert got["totalEvents"] == len(got["events"]) > 0
