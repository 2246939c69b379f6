"""Fixtures of the control-plane tests: cpdb on a real PostgreSQL and on SQLite.

Every test that takes ``cp`` (or ``client``) runs twice, once per database (the
PostgreSQL server comes from ``tests/_servers.py``). Each test gets
a fresh database, copied from a template migrated once per session (``CREATE DATABASE ...
TEMPLATE`` on PostgreSQL, a file copy on SQLite), so tests are isolated and quick.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from _databases import SchemaDatabases
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from apiary.control import ControlPlane
from apiary.control._common import utcnow
from apiary.control.api import create_control_plane_app
from apiary.control.db import Database, upgrade
from apiary.settings import ApiarySettings

ISSUER = "http://cp.test/cp"
DATA_PLANE_ID = "dp-test"
# Cheap argon2id parameters for tests; the production profile has its own test.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class FakeClock:
    """A clock tests move by hand (starts at the real time: ID tokens use real time)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="session")
def cp_databases(tmp_path_factory: pytest.TempPathFactory) -> SchemaDatabases:
    return SchemaDatabases("cp", upgrade, tmp_path_factory.mktemp("cp-template"))


@pytest.fixture(params=["sqlite", "postgresql"])
def cp_url(request: pytest.FixtureRequest, tmp_path: Path,
           cp_databases: SchemaDatabases) -> str:
    """A fresh, migrated cpdb for one test, on each database in turn."""
    return cp_databases.migrated(request, tmp_path)


@pytest.fixture
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path,
                 cp_databases: SchemaDatabases) -> str:
    """An empty database (no migrations yet); parametrize indirectly with the kind."""
    return cp_databases.empty(request, tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_settings(tmp_path: Path, url: str, **overrides: object) -> ApiarySettings:
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    return ApiarySettings(  # type: ignore[arg-type]
        data_dir=tmp_path, cp_database_url=url, cp_issuer=ISSUER, cp_envelope_key=key,
        **overrides,
    )


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Override in a test module to change the control plane's settings."""
    return {}


@pytest.fixture
def cp(
    cp_url: str, tmp_path: Path, clock: FakeClock, settings_overrides: dict[str, object]
) -> Iterator[ControlPlane]:
    control = ControlPlane(
        make_settings(tmp_path, cp_url, **settings_overrides), Database.open(cp_url),
        clock=clock, password_hasher=FAST_HASHER,
    )
    from apiary.control.dataplanes import register_data_plane

    with control.transaction() as db:
        register_data_plane(control, db, dp_id=DATA_PLANE_ID, name="test data plane",
                            url="http://dp.test")
    yield control
    control.close()


@pytest.fixture
def client(cp: ControlPlane) -> Iterator[TestClient]:
    with TestClient(create_control_plane_app(cp), follow_redirects=False) as test_client:
        yield test_client
