"""cpdb: configuration (prompt templates, evaluator configurations, alerts).

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


def upgrade() -> None:
    op.create_table(
        "alert_definitions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("condition", sa.JSON(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_alert_definitions_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_alert_definitions_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_alert_definitions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_definitions")),
        sa.UniqueConstraint(
            "project_id", "name", name=op.f("uq_alert_definitions_project_id_name")
        ),
    )
    op.create_index(
        op.f("ix_alert_definitions_org_id"), "alert_definitions", ["org_id"], unique=False
    )
    op.create_index(
        op.f("ix_alert_definitions_project_id"), "alert_definitions", ["project_id"], unique=False
    )
    op.create_index(
        op.f("ix_alert_definitions_workspace_id"),
        "alert_definitions",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "evaluator_configs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("deployed_version", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "type IN ('python', 'llm', 'human')", name=op.f("ck_evaluator_configs_type")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_evaluator_configs_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_evaluator_configs_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_evaluator_configs_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluator_configs")),
        sa.UniqueConstraint(
            "project_id", "name", name=op.f("uq_evaluator_configs_project_id_name")
        ),
    )
    op.create_index(
        op.f("ix_evaluator_configs_org_id"), "evaluator_configs", ["org_id"], unique=False
    )
    op.create_index(
        op.f("ix_evaluator_configs_project_id"), "evaluator_configs", ["project_id"], unique=False
    )
    op.create_index(
        op.f("ix_evaluator_configs_workspace_id"),
        "evaluator_configs",
        ["workspace_id"],
        unique=False,
    )
    op.create_table(
        "prompt_templates",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_prompt_templates_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_prompt_templates_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_prompt_templates_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_templates")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_prompt_templates_project_id_name")),
    )
    op.create_index(
        op.f("ix_prompt_templates_org_id"), "prompt_templates", ["org_id"], unique=False
    )
    op.create_index(
        op.f("ix_prompt_templates_project_id"), "prompt_templates", ["project_id"], unique=False
    )
    op.create_index(
        op.f("ix_prompt_templates_workspace_id"), "prompt_templates", ["workspace_id"], unique=False
    )
    op.create_table(
        "evaluator_versions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("evaluator_id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("criteria", sa.Text(), nullable=True),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("return_type", sa.String(length=16), nullable=False),
        sa.Column("pass_min", sa.Float(), nullable=True),
        sa.Column("pass_max", sa.Float(), nullable=True),
        sa.Column("sampling_pct", sa.Float(), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("model_params", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["evaluator_id"],
            ["evaluator_configs.id"],
            name=op.f("fk_evaluator_versions_evaluator_id_evaluator_configs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_evaluator_versions_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_evaluator_versions_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluator_versions")),
        sa.UniqueConstraint(
            "evaluator_id", "version", name=op.f("uq_evaluator_versions_evaluator_id_version")
        ),
    )
    op.create_index(
        op.f("ix_evaluator_versions_evaluator_id"),
        "evaluator_versions",
        ["evaluator_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_evaluator_versions_org_id"), "evaluator_versions", ["org_id"], unique=False
    )
    op.create_index(
        op.f("ix_evaluator_versions_project_id"), "evaluator_versions", ["project_id"], unique=False
    )
    op.create_table(
        "prompt_versions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("template_id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("model_params", sa.JSON(), nullable=False),
        sa.Column("message", sa.String(length=1000), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_prompt_versions_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_prompt_versions_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["prompt_templates.id"],
            name=op.f("fk_prompt_versions_template_id_prompt_templates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_versions")),
        sa.UniqueConstraint(
            "template_id", "version", name=op.f("uq_prompt_versions_template_id_version")
        ),
    )
    op.create_index(op.f("ix_prompt_versions_org_id"), "prompt_versions", ["org_id"], unique=False)
    op.create_index(
        op.f("ix_prompt_versions_project_id"), "prompt_versions", ["project_id"], unique=False
    )
    op.create_index(
        op.f("ix_prompt_versions_template_id"), "prompt_versions", ["template_id"], unique=False
    )
    op.create_table(
        "prompt_environments",
        sa.Column("template_id", sa.String(length=64), nullable=False),
        sa.Column("environment", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.String(length=64), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_prompt_environments_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_prompt_environments_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["prompt_templates.id"],
            name=op.f("fk_prompt_environments_template_id_prompt_templates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["prompt_versions.id"],
            name=op.f("fk_prompt_environments_version_id_prompt_versions"),
        ),
        sa.PrimaryKeyConstraint("template_id", "environment", name=op.f("pk_prompt_environments")),
    )
    op.create_index(
        op.f("ix_prompt_environments_org_id"), "prompt_environments", ["org_id"], unique=False
    )
    op.create_index(
        op.f("ix_prompt_environments_project_id"),
        "prompt_environments",
        ["project_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("prompt_environments")
    op.drop_table("prompt_versions")
    op.drop_table("evaluator_versions")
    op.drop_table("prompt_templates")
    op.drop_table("evaluator_configs")
    op.drop_table("alert_definitions")
