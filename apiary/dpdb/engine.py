"""Connections to dpdb: one engine per URL, configured for each database.

PostgreSQL through psycopg 3 (``postgresql+psycopg://``); SQLite files (``sqlite:///``) with
foreign keys on, WAL, a busy timeout, and ``BEGIN IMMEDIATE`` for every transaction: SQLite
allows one writer, and taking the write lock at the start (rather than on the first write)
turns lock upgrades, which fail with "database is locked", into orderly waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from apiary.errors import ConfigurationError, StoreUnavailable


def open_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for a dpdb URL (``postgresql+psycopg://...`` or ``sqlite:///path``)."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigurationError("dpdb on SQLite needs a file: sqlite:///path/dp.sqlite")
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.drivername == "postgresql+psycopg":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    raise ConfigurationError(
        f"unsupported dpdb driver {parsed.drivername!r}: use postgresql+psycopg:// or sqlite:///"
    )


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class DataPlaneDatabase:
    """dpdb: an engine and its sessions. :meth:`transaction` is the one way code writes.

    A database that cannot be reached surfaces as :class:`~apiary.errors.StoreUnavailable`
    (503, retryable), never as an internal error.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> DataPlaneDatabase:
        """Connect to dpdb at ``url``, bringing its schema up to date unless told not to."""
        database = cls(open_engine(url))
        if migrate:
            from apiary.dpdb.migrate import upgrade

            upgrade(database.engine)
        return database

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed if the block succeeds, else rolled back."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except OperationalError as exc:
            raise StoreUnavailable("the data plane's metadata database is unavailable",
                                   error=str(exc.orig)[:200]) from None

    def dispose(self) -> None:
        self.engine.dispose()


class LazyDatabase:
    """Opens (and migrates) dpdb on first use, once, from any thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._database: DataPlaneDatabase | None = None
        self._lock = threading.Lock()

    def get(self) -> DataPlaneDatabase:
        if self._database is None:
            with self._lock:
                if self._database is None:
                    self._database = DataPlaneDatabase.open(self.url)
        return self._database

    def dispose(self) -> None:
        if self._database is not None:
            self._database.dispose()
