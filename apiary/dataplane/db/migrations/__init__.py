"""Alembic scripts of dpdb (run through :mod:`apiary.dataplane.db.migrate`): ``env.py`` and
the revisions in ``versions/``. Nothing here is imported by other code."""

__all__: list[str] = []
