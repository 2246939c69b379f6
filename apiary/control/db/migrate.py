"""cpdb migrations, run programmatically with Alembic (scripts in ``migrations/``).

Bookkeeping in ``cp_alembic_version``; concurrent upgrades serialize themselves (see
:mod:`apiary._private.sqldb`).
"""

from __future__ import annotations

from pathlib import Path

from apiary._private.sqldb import Migrations

VERSION_TABLE = "cp_alembic_version"

MIGRATIONS = Migrations(
    what="cpdb",
    scripts=Path(__file__).parent / "migrations",
    version_table=VERSION_TABLE,
    # Any constant, distinct per schema: the advisory lock key on PostgreSQL.
    advisory_lock_key=0x61706961727943,
)

upgrade = MIGRATIONS.upgrade
downgrade = MIGRATIONS.downgrade
current_revision = MIGRATIONS.current_revision
head_revision = MIGRATIONS.head_revision
