"""Alembic scripts of cpdb (run through :mod:`apiary.control.db.migrate`)."""
