"""cpdb: the data plane that serves new projects (``data_planes.serves_new_projects``): a
project created while one is marked is assigned to it in the same transaction (at most one
data plane is marked; `apiary up` marks the node's own data plane).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("data_planes") as batch:
        batch.add_column(sa.Column("serves_new_projects", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("data_planes") as batch:
        batch.drop_column("serves_new_projects")
