"""dpdb: annotation queues' scoring criteria.

Revision ID: 0004
Revises: 0003

Self-contained (no model imports), so that later model changes cannot alter what this
revision does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("annotation_queues") as batch:
        batch.add_column(sa.Column("criteria", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("annotation_queues") as batch:
        batch.drop_column("criteria")
