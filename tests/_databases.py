"""Fresh SQL databases of one schema (cpdb or dpdb) for each test, on SQLite and PostgreSQL.

A test takes a database copied from a template migrated once per session (a file copy on
SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL): isolated, and much quicker than
migrating again. Templates are made on first use, so SQLite-only runs start no PostgreSQL.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from _servers import postgres_database

_counter = itertools.count()


class SchemaDatabases:
    """Databases of the schema that ``upgrade(url)`` migrates, named ``<prefix>_*``."""

    def __init__(self, prefix: str, upgrade: Callable[[str], object], root: Path) -> None:
        self.prefix = prefix
        self._upgrade = upgrade
        self._root = root
        self._sqlite_template: Path | None = None
        self._postgres_template: str | None = None

    def migrated(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        """A fresh, migrated database on ``request.param`` (``sqlite`` or ``postgresql``)."""
        if request.param == "sqlite":
            if self._sqlite_template is None:
                template = self._root / f"{self.prefix}-template.sqlite"
                self._upgrade(f"sqlite:///{template}")
                self._sqlite_template = template
            target = tmp_path / f"{self.prefix}.sqlite"
            shutil.copyfile(self._sqlite_template, target)
            return f"sqlite:///{target}"
        server: str = request.getfixturevalue("postgres")
        if self._postgres_template is None:
            # Numbered: a directory whose conftest re-exports this fixture (tests/security)
            # gets a second session-wide instance, which must not reuse the name.
            name = f"{self.prefix}_template_{next(_counter)}"
            self._upgrade(postgres_database(server, name))
            self._postgres_template = name
        return postgres_database(server, f"{self.prefix}_test_{next(_counter)}",
                                 self._postgres_template)

    def empty(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        """An empty database (never migrated) on ``request.param``."""
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / 'empty.sqlite'}"
        server: str = request.getfixturevalue("postgres")
        return postgres_database(server, f"{self.prefix}_empty_{next(_counter)}")
