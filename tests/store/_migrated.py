"""A store database migrated up to (not including) a given migration, as a data directory
of an earlier release would be, for the tests of a migration on existing rows."""

from __future__ import annotations

import uuid

from apiary.store import EmbeddedClickHouse, EventStore, load_migrations


def store_before(driver: EmbeddedClickHouse, version: str) -> EventStore:
    """A new database with every migration before ``version`` applied and recorded in its
    ledger (``apply_migrations`` then applies ``version`` and later); the caller drops it."""
    database = f"t_{uuid.uuid4().hex[:10]}"
    driver.command(f"CREATE DATABASE `{database}`")
    for migration in load_migrations(database):
        if migration.version >= version:
            break
        for statement in migration.statements:
            driver.command(statement)
    apply_ledger(driver, database, before=version)
    return EventStore(driver, database=database)


def apply_ledger(driver: EmbeddedClickHouse, database: str, before: str) -> None:
    """Record every migration before ``before`` as applied in ``database``'s ledger."""
    driver.command(
        f"CREATE TABLE IF NOT EXISTS `{database}`.schema_migrations (version String, "
        "name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version")
    for m in load_migrations(database):
        if m.version < before:
            driver.command(
                f"INSERT INTO `{database}`.schema_migrations (version, name, checksum) "
                "VALUES ({v:String}, {n:String}, {c:String})",
                {"v": m.version, "n": m.name, "c": m.checksum})
