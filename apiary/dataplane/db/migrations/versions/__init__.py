"""dpdb revisions, oldest first (loaded by Alembic, never imported by other code)."""

__all__: list[str] = []
