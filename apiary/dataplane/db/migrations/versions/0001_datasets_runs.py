"""dpdb: datasets, datapoints, dataset versions, experiment runs.

Revision ID: 0001
Revises:

Self-contained (no model imports), so that later model changes cannot alter what this
revision does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _time(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _tenant() -> list[sa.Column[object]]:
    return [sa.Column(name, sa.String(length=64), nullable=False)
            for name in ("org_id", "workspace_id", "project_id")]


def upgrade() -> None:
    op.create_table(
        "datapoints",
        sa.Column("id", sa.String(length=64), nullable=False),
        *_tenant(),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("ground_truth", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("linked_event", sa.String(length=128), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datapoints")),
    )
    op.create_index("ix_datapoints_project_id_linked_event", "datapoints",
                    ["project_id", "linked_event"], unique=False)

    op.create_table(
        "datasets",
        sa.Column("id", sa.String(length=64), nullable=False),
        *_tenant(),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        _time("created_at"),
        _time("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_datasets_project_id_name")),
    )
    op.create_index(op.f("ix_datasets_project_id"), "datasets", ["project_id"], unique=False)

    op.create_table(
        "experiment_runs",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("dataset_id", sa.String(length=128), nullable=True),
        sa.Column("dataset_version_id", sa.String(length=64), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("configuration", sa.JSON(), nullable=False),
        sa.Column("event_ids", sa.JSON(), nullable=False),
        sa.Column("session_ids", sa.JSON(), nullable=False),
        sa.Column("datapoint_ids", sa.JSON(), nullable=False),
        sa.Column("evaluators", sa.JSON(), nullable=False),
        sa.Column("passing_ranges", sa.JSON(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        _time("created_at"),
        _time("updated_at"),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_experiment_runs_status"),
        ),
        sa.PrimaryKeyConstraint("project_id", "id", name=op.f("pk_experiment_runs")),
    )
    op.create_index(op.f("ix_experiment_runs_dataset_id"), "experiment_runs", ["dataset_id"],
                    unique=False)
    op.create_index("ix_experiment_runs_project_id_created_at", "experiment_runs",
                    ["project_id", "created_at"], unique=False)

    op.create_table(
        "dataset_datapoints",
        sa.Column("dataset_id", sa.String(length=64), nullable=False),
        sa.Column("datapoint_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        _time("added_at"),
        sa.ForeignKeyConstraint(
            ["datapoint_id"], ["datapoints.id"],
            name=op.f("fk_dataset_datapoints_datapoint_id_datapoints"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"],
            name=op.f("fk_dataset_datapoints_dataset_id_datasets"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", "datapoint_id", name=op.f("pk_dataset_datapoints")),
    )
    op.create_index(op.f("ix_dataset_datapoints_datapoint_id"), "dataset_datapoints",
                    ["datapoint_id"], unique=False)

    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("dataset_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("datapoint_count", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(length=1000), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        _time("created_at"),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"],
            name=op.f("fk_dataset_versions_dataset_id_datasets"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_versions")),
        sa.UniqueConstraint("dataset_id", "version",
                            name=op.f("uq_dataset_versions_dataset_id_version")),
    )
    op.create_index(op.f("ix_dataset_versions_dataset_id"), "dataset_versions", ["dataset_id"],
                    unique=False)
    op.create_index(op.f("ix_dataset_versions_project_id"), "dataset_versions", ["project_id"],
                    unique=False)

    op.create_table(
        "dataset_version_items",
        sa.Column("version_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("datapoint_id", sa.String(length=64), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("ground_truth", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("linked_event", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"], ["dataset_versions.id"],
            name=op.f("fk_dataset_version_items_version_id_dataset_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", "position", name=op.f("pk_dataset_version_items")),
    )


def downgrade() -> None:
    op.drop_table("dataset_version_items")
    op.drop_index(op.f("ix_dataset_versions_project_id"), table_name="dataset_versions")
    op.drop_index(op.f("ix_dataset_versions_dataset_id"), table_name="dataset_versions")
    op.drop_table("dataset_versions")
    op.drop_index(op.f("ix_dataset_datapoints_datapoint_id"), table_name="dataset_datapoints")
    op.drop_table("dataset_datapoints")
    op.drop_index("ix_experiment_runs_project_id_created_at", table_name="experiment_runs")
    op.drop_index(op.f("ix_experiment_runs_dataset_id"), table_name="experiment_runs")
    op.drop_table("experiment_runs")
    op.drop_index(op.f("ix_datasets_project_id"), table_name="datasets")
    op.drop_table("datasets")
    op.drop_index("ix_datapoints_project_id_linked_event", table_name="datapoints")
    op.drop_table("datapoints")
