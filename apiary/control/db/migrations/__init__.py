"""Alembic scripts of cpdb (run through :mod:`apiary.control.db.migrate`): ``env.py`` and
the revisions in ``versions/``. Nothing here is imported by other code."""

__all__: list[str] = []
