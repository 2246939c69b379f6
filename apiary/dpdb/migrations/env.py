"""Alembic environment of dpdb: runs on the engine handed over by ``migrate.py``."""

from __future__ import annotations

# Imported for their effect: each registers its models on the metadata.
import apiary.dpdb.models
import apiary.dpdb.models_proxy
import apiary.dpdb.models_review  # noqa: F401
from apiary.dpdb.migrate import MIGRATIONS

MIGRATIONS.run_in_alembic_env()
