"""Fixtures of the dpdb tests: dpdb on a real PostgreSQL and on SQLite.

Every test that takes ``dp`` runs twice, once per database (the PostgreSQL server comes
from ``tests/_servers.py``); each gets a fresh database copied from a template migrated
once per session (``CREATE DATABASE ... TEMPLATE`` on PostgreSQL, a file copy on SQLite).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _databases import SchemaDatabases

from apiary.dataplane.db import DataPlaneDatabase, upgrade


@pytest.fixture(scope="session")
def dp_databases(tmp_path_factory: pytest.TempPathFactory) -> SchemaDatabases:
    return SchemaDatabases("dp", upgrade, tmp_path_factory.mktemp("dp-template"))


@pytest.fixture(params=["sqlite", "postgresql"])
def dp_url(request: pytest.FixtureRequest, tmp_path: Path,
           dp_databases: SchemaDatabases) -> str:
    """A fresh, migrated dpdb for one test, on each database in turn."""
    return dp_databases.migrated(request, tmp_path)


@pytest.fixture
def dp(dp_url: str) -> Iterator[DataPlaneDatabase]:
    database = DataPlaneDatabase.open(dp_url, migrate=False)
    yield database
    database.dispose()


@pytest.fixture
def empty_dp_url(request: pytest.FixtureRequest, tmp_path: Path,
                 dp_databases: SchemaDatabases) -> str:
    """An empty database (never migrated); parametrize indirectly with the kind."""
    return dp_databases.empty(request, tmp_path)
