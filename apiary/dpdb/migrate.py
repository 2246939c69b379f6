"""dpdb migrations, run programmatically with Alembic.

The migration scripts ship inside the package (``apiary/dpdb/migrations``) and are the
same for PostgreSQL and SQLite. :func:`upgrade` is safe to call from several processes at
once (every data-plane replica migrates on start): on PostgreSQL the migration transaction
takes an advisory lock, on SQLite the transaction holds the database's write lock.
Alembic's bookkeeping table is ``dp_alembic_version``, so dpdb may even share a PostgreSQL
database with another schema without colliding.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from apiary.dpdb.engine import open_engine

VERSION_TABLE = "dp_alembic_version"
_SCRIPTS = Path(__file__).parent / "migrations"


def _config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def _with_engine(url: str | Engine) -> tuple[Engine, bool]:
    if isinstance(url, Engine):
        return url, False
    return open_engine(url), True


def upgrade(url: str | Engine, revision: str = "head") -> None:
    """Bring dpdb at ``url`` up to ``revision`` (default: the newest)."""
    engine, owned = _with_engine(url)
    try:
        command.upgrade(_config(engine), revision)
    finally:
        if owned:
            engine.dispose()


def downgrade(url: str | Engine, revision: str) -> None:
    """Take dpdb at ``url`` down to ``revision`` (``"base"``: empty)."""
    engine, owned = _with_engine(url)
    try:
        command.downgrade(_config(engine), revision)
    finally:
        if owned:
            engine.dispose()


def current_revision(url: str | Engine) -> str | None:
    """The revision dpdb at ``url`` is at, or None if it was never migrated."""
    engine, owned = _with_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": VERSION_TABLE}
            )
            return context.get_current_revision()
    finally:
        if owned:
            engine.dispose()


def head_revision() -> str:
    """The newest revision the shipped scripts define."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head
