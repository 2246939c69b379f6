"""dpdb migrations, run programmatically with Alembic (scripts in ``migrations/``).

Every data-plane replica migrates on first use; bookkeeping in ``dp_alembic_version``, so
dpdb may share a PostgreSQL database with another schema; concurrent upgrades serialize
themselves (see :mod:`apiary._private.sqldb`).
"""

from __future__ import annotations

from pathlib import Path

from apiary._private.sqldb import Migrations

VERSION_TABLE = "dp_alembic_version"

# Any constant other than cpdb's ("apiaryD"): the advisory lock key on PostgreSQL.
MIGRATIONS = Migrations(what="dpdb", scripts=Path(__file__).parent / "migrations",
                        version_table=VERSION_TABLE, advisory_lock_key=0x61706961727944)

upgrade, downgrade = MIGRATIONS.upgrade, MIGRATIONS.downgrade
current_revision, head_revision = MIGRATIONS.current_revision, MIGRATIONS.head_revision
