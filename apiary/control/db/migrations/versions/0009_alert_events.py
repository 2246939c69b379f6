"""cpdb: alert activity reported by data planes: each transition of an alert (warning,
critical, resolution) and each delivery outcome of its notifications, one row per event id
(the data plane's stable id, so a repeated report is stored once).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "alert_events",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("alert_id", sa.String(length=64), nullable=False),
        sa.Column("data_plane_id", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("window_end", sa.BigInteger(), nullable=True),
        sa.Column("muted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("channel_id", sa.String(length=64), nullable=True),
        sa.Column("channel_type", sa.String(length=16), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('transition', 'delivery')",
                           name=op.f("ck_alert_events_kind")),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"],
                                name=op.f("fk_alert_events_org_id_organizations"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"],
                                name=op.f("fk_alert_events_project_id_projects"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_events")),
    )
    op.create_index(op.f("ix_alert_events_org_id"), "alert_events", ["org_id"], unique=False)
    op.create_index(op.f("ix_alert_events_project_id"), "alert_events", ["project_id"],
                    unique=False)
    op.create_index("ix_alert_events_alert_id_at", "alert_events", ["alert_id", "at"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_alert_events_alert_id_at", table_name="alert_events")
    op.drop_index(op.f("ix_alert_events_project_id"), table_name="alert_events")
    op.drop_index(op.f("ix_alert_events_org_id"), table_name="alert_events")
    op.drop_table("alert_events")
