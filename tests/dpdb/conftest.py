"""Fixtures of the dpdb tests: dpdb on a real PostgreSQL and on SQLite.

Every test that takes ``dp`` runs twice, once per database (the PostgreSQL server comes
from ``tests/_servers.py``); each gets a fresh database copied from a template migrated
once per session (``CREATE DATABASE ... TEMPLATE`` on PostgreSQL, a file copy on SQLite).
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from _servers import postgres_database

from apiary.dpdb import DataPlaneDatabase, upgrade

_counter = itertools.count()


@pytest.fixture(scope="session")
def dp_postgres_template(postgres: str) -> str:
    upgrade(postgres_database(postgres, "dp_template"))
    return "dp_template"


@pytest.fixture(scope="session")
def dp_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dp-template") / "dp.sqlite"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def dp_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated dpdb for one test, on each database in turn."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("dp_sqlite_template")
        target = tmp_path / "dp.sqlite"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    server: str = request.getfixturevalue("postgres")
    name: str = request.getfixturevalue("dp_postgres_template")
    return postgres_database(server, f"dp_test_{next(_counter)}", name)


@pytest.fixture
def dp(dp_url: str) -> Iterator[DataPlaneDatabase]:
    database = DataPlaneDatabase.open(dp_url, migrate=False)
    yield database
    database.dispose()


@pytest.fixture
def empty_dp_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (never migrated); parametrize indirectly with the kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.sqlite'}"
    server: str = request.getfixturevalue("postgres")
    return postgres_database(server, f"dp_empty_{next(_counter)}")
