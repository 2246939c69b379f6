"""dpdb: LLM provider credentials (encrypted), annotation queues and their items.

Revision ID: 0002
Revises: 0001

Self-contained (no model imports), so that later model changes cannot alter what this
revision does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _time(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str, length: int, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "provider_credentials",
        _text("id", 64),
        _text("org_id", 64),
        _text("workspace_id", 64),
        _text("provider", 64),
        _text("name", 200, nullable=True),
        _text("api_base", 2000, nullable=True),
        _text("api_version", 64, nullable=True),
        _text("key_hint", 16),
        _text("key_id", 32),
        sa.Column("wrapped_key", sa.Text(), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        _text("created_by", 200, nullable=True),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_credentials")),
        sa.UniqueConstraint("org_id", "workspace_id", "provider",
                            name=op.f("uq_provider_credentials_org_id_workspace_id_provider")),
    )

    op.create_table(
        "annotation_queues",
        _text("id", 64),
        _text("org_id", 64),
        _text("workspace_id", 64),
        _text("project_id", 64),
        _text("name", 200),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("reviewers", sa.JSON(), nullable=False),
        _time("fill_cursor", nullable=True),
        _time("last_filled_at", nullable=True),
        _text("created_by", 200, nullable=True),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_queues")),
        sa.UniqueConstraint("project_id", "name",
                            name=op.f("uq_annotation_queues_project_id_name")),
    )

    op.create_table(
        "annotation_items",
        _text("queue_id", 64),
        _text("event_id", 256),
        _text("project_id", 64),
        _text("status", 16),
        _text("source", 8),
        _text("assignee", 200, nullable=True),
        _text("added_by", 200, nullable=True),
        _time("added_at"),
        _time("updated_at"),
        _time("completed_at", nullable=True),
        _text("completed_by", 200, nullable=True),
        sa.Column("feedback", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'in_progress', 'completed', 'skipped', 'removed')",
            name=op.f("ck_annotation_items_status"),
        ),
        sa.CheckConstraint("source IN ('manual', 'rule')",
                           name=op.f("ck_annotation_items_source")),
        sa.ForeignKeyConstraint(
            ["queue_id"], ["annotation_queues.id"],
            name=op.f("fk_annotation_items_queue_id_annotation_queues"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("queue_id", "event_id", name=op.f("pk_annotation_items")),
    )
    op.create_index("ix_annotation_items_queue_id_status_added_at", "annotation_items",
                    ["queue_id", "status", "added_at"], unique=False)
    op.create_index("ix_annotation_items_project_id_event_id", "annotation_items",
                    ["project_id", "event_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_annotation_items_project_id_event_id", table_name="annotation_items")
    op.drop_index("ix_annotation_items_queue_id_status_added_at",
                  table_name="annotation_items")
    op.drop_table("annotation_items")
    op.drop_table("annotation_queues")
    op.drop_table("provider_credentials")
