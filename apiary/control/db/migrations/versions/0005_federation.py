"""cpdb: federation — data planes' identity keys, bootstrap tokens, status and health; the
config log; health history; commands; projects assigned to data planes.

Revision ID: 0005
Revises: 0004

Existing data planes stay what they were: legacy audiences (``federated`` false, status
``active``, no key). Existing projects stay unassigned.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("data_planes") as batch:
        batch.add_column(sa.Column("status", sa.String(length=16), nullable=False,
                                   server_default="active"))
        batch.add_column(sa.Column("federated", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("public_jwk", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("key_thumbprint", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("previous_public_jwk", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("previous_key_thumbprint", sa.String(length=64),
                                   nullable=True))
        batch.add_column(sa.Column("bootstrap_token_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("bootstrap_expires_at", _AT, nullable=True))
        batch.add_column(sa.Column("bootstrap_used_at", _AT, nullable=True))
        batch.add_column(sa.Column("registered_at", _AT, nullable=True))
        batch.add_column(sa.Column("revoked_at", _AT, nullable=True))
        batch.add_column(sa.Column("last_seen_at", _AT, nullable=True))
        batch.add_column(sa.Column("connected", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("draining", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("apiary_version", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("versions", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("last_health", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("applied_config_version", sa.BigInteger(), nullable=True))
        batch.create_unique_constraint(op.f("uq_data_planes_bootstrap_token_hash"),
                                       ["bootstrap_token_hash"])
        batch.create_check_constraint(op.f("ck_data_planes_status"),
                                      "status IN ('pending', 'active', 'revoked')")
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("data_plane_id", sa.String(length=200), nullable=True))
        batch.create_foreign_key(op.f("fk_projects_data_plane_id_data_planes"), "data_planes",
                                 ["data_plane_id"], ["id"], ondelete="SET NULL")
        batch.create_index(op.f("ix_projects_data_plane_id"), ["data_plane_id"], unique=False)

    op.create_table(
        "config_changes",
        sa.Column("version", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=True),
        sa.Column("workspace_id", sa.String(length=64), nullable=True),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("data_plane_id", sa.String(length=200), nullable=True),
        sa.Column("object_id", sa.String(length=200), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("changed_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_config_changes")),
    )
    for column in ("org_id", "workspace_id", "project_id", "data_plane_id"):
        op.create_index(op.f(f"ix_config_changes_{column}"), "config_changes", [column],
                        unique=False)

    op.create_table(
        "data_plane_health",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("data_plane_id", sa.String(length=200), nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["data_plane_id"], ["data_planes.id"],
                                name=op.f("fk_data_plane_health_data_plane_id_data_planes"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_plane_health")),
    )
    op.create_index(op.f("ix_data_plane_health_data_plane_id"), "data_plane_health",
                    ["data_plane_id"], unique=False)
    op.create_index(op.f("ix_data_plane_health_at"), "data_plane_health", ["at"], unique=False)

    op.create_table(
        "data_plane_commands",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("data_plane_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("sent_at", _AT, nullable=True),
        sa.Column("completed_at", _AT, nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["data_plane_id"], ["data_planes.id"],
                                name=op.f("fk_data_plane_commands_data_plane_id_data_planes"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_plane_commands")),
    )
    op.create_index(op.f("ix_data_plane_commands_data_plane_id"), "data_plane_commands",
                    ["data_plane_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_data_plane_commands_data_plane_id"), table_name="data_plane_commands")
    op.drop_table("data_plane_commands")
    op.drop_index(op.f("ix_data_plane_health_at"), table_name="data_plane_health")
    op.drop_index(op.f("ix_data_plane_health_data_plane_id"), table_name="data_plane_health")
    op.drop_table("data_plane_health")
    for column in ("org_id", "workspace_id", "project_id", "data_plane_id"):
        op.drop_index(op.f(f"ix_config_changes_{column}"), table_name="config_changes")
    op.drop_table("config_changes")
    with op.batch_alter_table("projects") as batch:
        batch.drop_index(op.f("ix_projects_data_plane_id"))
        batch.drop_constraint(op.f("fk_projects_data_plane_id_data_planes"), type_="foreignkey")
        batch.drop_column("data_plane_id")
    with op.batch_alter_table("data_planes") as batch:
        batch.drop_constraint(op.f("ck_data_planes_status"), type_="check")
        batch.drop_constraint(op.f("uq_data_planes_bootstrap_token_hash"), type_="unique")
        for column in ("applied_config_version", "last_health", "versions", "apiary_version",
                       "draining", "connected", "last_seen_at", "revoked_at", "registered_at",
                       "bootstrap_used_at", "bootstrap_expires_at", "bootstrap_token_hash",
                       "previous_key_thumbprint", "previous_public_jwk", "key_thumbprint",
                       "public_jwk", "federated", "status"):
            batch.drop_column(column)
