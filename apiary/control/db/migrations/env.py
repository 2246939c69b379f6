"""Alembic environment of cpdb: runs on the engine handed over by ``migrate.py``."""

from __future__ import annotations

import apiary.control.db  # noqa: F401  (registers every model on the metadata)
from apiary.control.db.migrate import MIGRATIONS

MIGRATIONS.run_in_alembic_env()
