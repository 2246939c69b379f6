"""What the control plane's and the data plane's SQL databases share: engines, the
transaction discipline, and Alembic migrations run from the package.

Both databases are reached through SQLAlchemy 2 on PostgreSQL (``postgresql+psycopg://``)
or a SQLite file (``sqlite:///``, the embedded default). SQLite runs with foreign keys on,
WAL, a busy timeout, and ``BEGIN IMMEDIATE`` for every transaction: SQLite allows one
writer, and taking the write lock at the start (rather than on the first write) turns lock
upgrades, which fail with "database is locked", into orderly waiting.

Migrations ship inside the package and are the same SQL for both drivers. ``upgrade`` is
safe from several processes at once: on PostgreSQL the migration transaction takes an
advisory lock (one key per schema), on SQLite it holds the write lock. Each schema keeps
Alembic's bookkeeping in its own version table, so schemas can share a database.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import DateTime, Engine, create_engine, event, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from apiary._private.files import private_dir, private_file
from apiary.errors import ConfigurationError, StoreUnavailable

# Alembic's runtime context is process-global: two schemas migrating at once in one process
# (say cpdb and dpdb in threads) would run in each other's context.
_ALEMBIC = threading.Lock()

#: Constraint names by one convention, so migrations name them identically on PostgreSQL
#: and SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A point in time: stored in UTC, returned timezone-aware in UTC (SQLite has no time
    zones; PostgreSQL's ``timestamptz`` returns the session's zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("stored times must be timezone-aware")
        value = value.astimezone(UTC)
        # SQLite stores text without an offset: store the UTC wall time.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def open_engine(url: str, *, what: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; ``what`` names the database in error messages."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigurationError(f"{what} on SQLite needs a file: sqlite:///path/{what}.sqlite")
        path = Path(parsed.database)
        if not path.parent.exists():
            private_dir(path.parent)
        # Created owner-only before SQLite opens it: its -wal and -shm files take the
        # main file's mode, and the databases hold password hashes and sealed keys.
        private_file(path)
        engine = create_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.drivername == "postgresql+psycopg":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    raise ConfigurationError(
        f"unsupported {what} driver {parsed.drivername!r}: use postgresql+psycopg:// or "
        "sqlite:///"
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


class SqlDatabase:
    """An engine and its sessions. :meth:`transaction` is the one way code writes.

    A database that cannot be reached surfaces as :class:`~apiary.errors.StoreUnavailable`
    (503, retryable), never as an internal error.
    """

    #: Named in error messages ("cpdb", "dpdb").
    what = "database"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def session_factory(self) -> sessionmaker[Session]:
        """The factory of the sessions :meth:`transaction` opens (to attach session events)."""
        return self._sessions

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed if the block succeeds, else rolled back."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except OperationalError as exc:
            raise StoreUnavailable(f"{self.what} is unavailable",
                                   error=str(exc.orig)[:200]) from None

    def dispose(self) -> None:
        self.engine.dispose()


@dataclass(frozen=True)
class Migrations:
    """One schema's Alembic scripts (``scripts``) and bookkeeping (``version_table``)."""

    what: str
    scripts: Path
    version_table: str
    advisory_lock_key: int

    def _config(self, engine: Engine | None = None) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.scripts))
        if engine is not None:
            config.attributes["engine"] = engine
        return config

    def _engine(self, url: str | Engine) -> tuple[Engine, bool]:
        if isinstance(url, Engine):
            return url, False
        return open_engine(url, what=self.what), True

    def upgrade(self, url: str | Engine, revision: str = "head") -> None:
        """Bring the schema at ``url`` up to ``revision`` (default: the newest)."""
        engine, owned = self._engine(url)
        try:
            with _ALEMBIC:
                command.upgrade(self._config(engine), revision)
        finally:
            if owned:
                engine.dispose()

    def downgrade(self, url: str | Engine, revision: str) -> None:
        """Take the schema at ``url`` down to ``revision`` (``"base"``: empty)."""
        engine, owned = self._engine(url)
        try:
            with _ALEMBIC:
                command.downgrade(self._config(engine), revision)
        finally:
            if owned:
                engine.dispose()

    def current_revision(self, url: str | Engine) -> str | None:
        """The revision the schema at ``url`` is at, or None if it was never migrated."""
        engine, owned = self._engine(url)
        try:
            with engine.connect() as connection:
                context = MigrationContext.configure(
                    connection, opts={"version_table": self.version_table}
                )
                return context.get_current_revision()
        finally:
            if owned:
                engine.dispose()

    def head_revision(self) -> str:
        """The newest revision the shipped scripts define."""
        head = ScriptDirectory.from_config(self._config()).get_current_head()
        if head is None:
            raise ConfigurationError(f"{self.what} ships no migrations")
        return head

    def run_in_alembic_env(self) -> None:
        """The body of a schema's ``migrations/env.py``: migrate on the handed-over engine."""
        from alembic import context

        engine: Engine = context.config.attributes["engine"]
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            context.configure(
                connection=connection,
                version_table=self.version_table,
                render_as_batch=sqlite,
                # SQLite's DDL is transactional, but Alembic assumes otherwise and would
                # read the version table outside any transaction: two processes migrating
                # at once then both created the tables. In one transaction, its BEGIN
                # IMMEDIATE (see _sqlite_begin) takes the write lock before the version
                # is read, as the advisory lock does on PostgreSQL.
                transactional_ddl=True if sqlite else None,
            )
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                                       {"k": self.advisory_lock_key})
                context.run_migrations()
