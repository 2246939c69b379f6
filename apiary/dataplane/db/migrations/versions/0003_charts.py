"""dpdb: saved charts.

Revision ID: 0003
Revises: 0002

Self-contained (no model imports), so that later model changes cannot alter what this
revision does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def _text(name: str, length: int, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "charts",
        _text("id", 64),
        _text("org_id", 64),
        _text("workspace_id", 64),
        _text("project_id", 64),
        _text("name", 200),
        sa.Column("description", sa.Text(), nullable=True),
        _text("metric", 300),
        _text("func", 32, nullable=True),
        _text("group_by", 300, nullable=True),
        _text("bucketing", 16),
        sa.Column("date_range", sa.JSON(), nullable=True),
        sa.Column("query", sa.JSON(), nullable=True),
        _text("owner_id", 200, nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        _text("created_by", 200, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charts")),
    )
    op.create_index("ix_charts_project_id_created_at", "charts",
                    ["project_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_charts_project_id_created_at", table_name="charts")
    op.drop_table("charts")
