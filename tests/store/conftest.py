"""Fixtures for store tests (the session's chDB engine, ``driver``/``store``/``project``,
comes from tests/conftest.py): ``fresh_store`` gives a test a pristine database."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from apiary.store import EmbeddedClickHouse, EventStore, apply_migrations


@pytest.fixture
def fresh_store(driver: EmbeddedClickHouse) -> Iterator[EventStore]:
    """A store on its own, newly migrated database (dropped afterwards)."""
    database = f"t_{uuid.uuid4().hex[:10]}"
    apply_migrations(driver, database)
    yield EventStore(driver, database=database)
    driver.command(f"DROP DATABASE IF EXISTS `{database}`")
