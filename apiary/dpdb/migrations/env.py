"""Alembic environment of dpdb: runs on the engine handed over by ``migrate.py``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, text

# Imported for their effect: each registers its models on the metadata.
import apiary.dpdb.models
import apiary.dpdb.models_proxy
import apiary.dpdb.models_review  # noqa: F401
from apiary.dpdb.migrate import VERSION_TABLE

# Any constant other than cpdb's: the advisory lock key that serializes concurrent
# upgrades of dpdb on PostgreSQL.
_PG_LOCK_KEY = 0x61706961727944


def _run() -> None:
    engine: Engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            version_table=VERSION_TABLE,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            context.run_migrations()


_run()
