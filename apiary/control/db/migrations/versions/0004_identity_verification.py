"""cpdb: verified emails, instance admins, claimed email domains, browser-bound SSO
state, the SSO second-factor ticket and the org's trust in its IdP's MFA.

Revision ID: 0004
Revises: 0003

Existing accounts that already hold a membership are marked verified as of the upgrade
(they were given something by someone, and must keep working); the others stay
unverified and own nothing until they prove their address.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email_verified_at", sa.DateTime(timezone=True),
                                   nullable=True))
        batch.add_column(sa.Column("is_instance_admin", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(sa.Column("trust_idp_mfa", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    # Logins in flight have no binder: they are refused, so simply drop them.
    op.execute(sa.text("DELETE FROM sso_login_states"))
    with op.batch_alter_table("sso_login_states") as batch:
        batch.add_column(sa.Column("binder_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("link_user_id", sa.String(length=64), nullable=True))
        batch.create_foreign_key(
            op.f("fk_sso_login_states_link_user_id_users"), "users", ["link_user_id"], ["id"],
            ondelete="CASCADE",
        )
        batch.create_index(op.f("ix_sso_login_states_link_user_id"), ["link_user_id"],
                           unique=False)
    users = sa.table("users", sa.column("id", sa.String()),
                     sa.column("email_verified_at", sa.DateTime(timezone=True)))
    memberships = sa.table("memberships", sa.column("user_id", sa.String()))
    op.execute(
        users.update()
        .where(users.c.id.in_(sa.select(memberships.c.user_id)))
        .values(email_verified_at=datetime.now(UTC))
    )

    op.create_table(
        "sso_mfa_tickets",
        sa.Column("ticket_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("return_to", sa.String(length=2000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_sso_mfa_tickets_user_id_users"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["provider_id"], ["oidc_providers.id"],
                                name=op.f("fk_sso_mfa_tickets_provider_id_oidc_providers"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("ticket_hash", name=op.f("pk_sso_mfa_tickets")),
    )
    op.create_index(op.f("ix_sso_mfa_tickets_user_id"), "sso_mfa_tickets", ["user_id"],
                    unique=False)
    op.create_index(op.f("ix_sso_mfa_tickets_provider_id"), "sso_mfa_tickets",
                    ["provider_id"], unique=False)

    op.create_table(
        "email_verifications",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_email_verifications_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_verifications")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_email_verifications_token_hash")),
    )
    op.create_index(op.f("ix_email_verifications_user_id"), "email_verifications",
                    ["user_id"], unique=False)

    op.create_table(
        "org_domains",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approved_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"],
                                name=op.f("fk_org_domains_org_id_organizations"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_org_domains")),
        sa.UniqueConstraint("org_id", "domain", name=op.f("uq_org_domains_org_id_domain")),
    )
    op.create_index(op.f("ix_org_domains_org_id"), "org_domains", ["org_id"], unique=False)
    op.create_index(op.f("ix_org_domains_domain"), "org_domains", ["domain"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_org_domains_domain"), table_name="org_domains")
    op.drop_index(op.f("ix_org_domains_org_id"), table_name="org_domains")
    op.drop_table("org_domains")
    op.drop_index(op.f("ix_email_verifications_user_id"), table_name="email_verifications")
    op.drop_table("email_verifications")
    op.drop_index(op.f("ix_sso_mfa_tickets_provider_id"), table_name="sso_mfa_tickets")
    op.drop_index(op.f("ix_sso_mfa_tickets_user_id"), table_name="sso_mfa_tickets")
    op.drop_table("sso_mfa_tickets")
    op.execute(sa.text("DELETE FROM sso_login_states"))
    with op.batch_alter_table("sso_login_states") as batch:
        batch.drop_index(op.f("ix_sso_login_states_link_user_id"))
        batch.drop_constraint(op.f("fk_sso_login_states_link_user_id_users"),
                              type_="foreignkey")
        batch.drop_column("link_user_id")
        batch.drop_column("binder_hash")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("trust_idp_mfa")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("is_instance_admin")
        batch.drop_column("email_verified_at")
