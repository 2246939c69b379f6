"""cpdb migrations, run programmatically with Alembic (scripts in ``migrations/``).

Bookkeeping in ``cp_alembic_version``; concurrent upgrades serialize themselves (see
:mod:`apiary._private.sqldb`).
"""

from __future__ import annotations

from pathlib import Path

from apiary._private.sqldb import Migrations

VERSION_TABLE = "cp_alembic_version"

# Any constant, distinct per schema ("apiaryC"): the advisory lock key on PostgreSQL.
MIGRATIONS = Migrations(what="cpdb", scripts=Path(__file__).parent / "migrations",
                        version_table=VERSION_TABLE, advisory_lock_key=0x61706961727943)

upgrade, downgrade = MIGRATIONS.upgrade, MIGRATIONS.downgrade
current_revision, head_revision = MIGRATIONS.current_revision, MIGRATIONS.head_revision
