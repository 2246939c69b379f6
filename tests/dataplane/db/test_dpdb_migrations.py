"""dpdb migrations on PostgreSQL and SQLite: from empty, round trips, concurrency, and no
drift between the models and what the migrations build."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect

from apiary.dataplane.db import (
    VERSION_TABLE,
    Base,
    DataPlaneDatabase,
    current_revision,
    downgrade,
    head_revision,
    open_engine,
    upgrade,
)
from apiary.settings import ApiarySettings

BOTH = pytest.mark.parametrize("empty_dp_url", ["sqlite", "postgresql"], indirect=True)
TABLES = {"datasets", "datapoints", "dataset_datapoints", "dataset_versions",
          "dataset_version_items", "experiment_runs",
          "provider_credentials", "annotation_queues", "annotation_items", "charts"}


def _tables(url: str) -> set[str]:
    engine = open_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@BOTH
def test_upgrade_from_empty_builds_exactly_the_models(empty_dp_url: str) -> None:
    assert current_revision(empty_dp_url) is None
    upgrade(empty_dp_url)
    assert current_revision(empty_dp_url) == head_revision() == "0004"
    assert _tables(empty_dp_url) == TABLES | {VERSION_TABLE} == set(Base.metadata.tables) | {
        "dp_alembic_version"}
    engine = open_engine(empty_dp_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection,
                                                 opts={"version_table": VERSION_TABLE})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


@BOTH
def test_downgrade_and_upgrade_round_trip_and_idempotence(empty_dp_url: str) -> None:
    upgrade(empty_dp_url)
    upgrade(empty_dp_url)  # nothing to do, nothing fails
    downgrade(empty_dp_url, "base")
    assert current_revision(empty_dp_url) is None
    assert _tables(empty_dp_url) == {VERSION_TABLE}
    upgrade(empty_dp_url)
    assert _tables(empty_dp_url) == TABLES | {VERSION_TABLE}


def _open_and_close(url: str) -> None:
    DataPlaneDatabase.open(url).dispose()


@BOTH
def test_concurrent_upgrades_serialize(empty_dp_url: str) -> None:
    """Every replica (a process) migrates on start: several at once all succeed."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        pool.map(_open_and_close, [empty_dp_url] * 3)
    assert current_revision(empty_dp_url) == head_revision()
    assert _tables(empty_dp_url) == TABLES | {VERSION_TABLE}


@BOTH
def test_concurrent_upgrades_on_sqlite_failed_with_table_already_exists(
    empty_dp_url: str,
) -> None:
    """Alembic committed after each SQLite migration, releasing the write lock between
    them, so a second replica read the version mid-upgrade and created the same tables.
    An upgrade from empty now holds one transaction (one BEGIN, one COMMIT) throughout."""
    engine = open_engine(empty_dp_url)
    begins: list[str] = []
    commits: list[str] = []
    event.listen(engine, "begin", lambda conn: begins.append("begin"))
    event.listen(engine, "commit", lambda conn: commits.append("commit"))
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    assert current_revision(empty_dp_url) == head_revision() == "0004"  # four migrations
    assert (len(begins), len(commits)) == (1, 1)


def test_the_embedded_default_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    settings = ApiarySettings(data_dir=tmp_path)
    assert settings.dp_database == f"sqlite:///{settings.data_dir / 'dp.sqlite'}"
    assert settings.dp_database != settings.cp_database
    database = DataPlaneDatabase.open(settings.dp_database)
    try:
        assert (settings.data_dir / "dp.sqlite").exists()
        assert current_revision(database.engine) == head_revision()
    finally:
        database.dispose()
    configured = ApiarySettings(
        data_dir=tmp_path, dp_database_url="postgresql+psycopg://u@db:5432/apiary_dp")
    assert configured.dp_database == "postgresql+psycopg://u@db:5432/apiary_dp"
    from apiary.errors import ConfigurationError
    from apiary.settings import load_settings

    with pytest.raises(ConfigurationError, match="dp_database_url"):
        load_settings(data_dir=tmp_path, dp_database_url="mysql://nope")
