"""Connections to cpdb: one engine per URL, configured for each database.

PostgreSQL through psycopg 3 (``postgresql+psycopg://``); SQLite files (``sqlite:///``) with
foreign keys on, WAL, a busy timeout, and ``BEGIN IMMEDIATE`` for every transaction: SQLite
allows one writer, and taking the write lock at the start (rather than on the first write)
turns lock upgrades, which fail with "database is locked", into orderly waiting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from apiary.errors import ConfigurationError


def open_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for a cpdb URL (``postgresql+psycopg://...`` or ``sqlite:///path``)."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigurationError("cpdb on SQLite needs a file: sqlite:///path/cp.sqlite")
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.drivername == "postgresql+psycopg":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    raise ConfigurationError(
        f"unsupported cpdb driver {parsed.drivername!r}: use postgresql+psycopg:// or sqlite:///"
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


class Database:
    """An engine and its sessions. :meth:`transaction` is the one way code writes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> Database:
        return cls(open_engine(url))

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed if the block succeeds, else rolled back."""
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
