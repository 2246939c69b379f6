"""Alembic environment of dpdb: runs on the engine handed over by ``migrate.py``."""

from __future__ import annotations

# Imported for their effect: each registers its models on the metadata.
import apiary.dataplane.db.models
import apiary.dataplane.db.models_proxy
import apiary.dataplane.db.models_review  # noqa: F401
from apiary.dataplane.db.migrate import MIGRATIONS

MIGRATIONS.run_in_alembic_env()
