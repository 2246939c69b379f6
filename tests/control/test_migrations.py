"""cpdb migrations on PostgreSQL and SQLite: from empty, round trips, and no drift
between the models and what the migrations build."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

from apiary.control.db import Base, Role, current_revision, downgrade, head_revision, open_engine
from apiary.control.db import upgrade as upgrade_db
from apiary.control.db.migrate import VERSION_TABLE

BOTH = pytest.mark.parametrize("empty_db_url", ["sqlite", "postgresql"], indirect=True)
CONFIG_TABLES = {"prompt_templates", "prompt_versions", "prompt_environments",
                 "evaluator_configs", "evaluator_versions", "alert_definitions"}
IDENTITY_0004 = {"org_domains", "email_verifications", "sso_mfa_tickets"}
FEDERATION_0005 = {"config_changes", "data_plane_health", "data_plane_commands"}
NOTIFICATIONS_0007 = {"notification_channels"}
ACTIVITY_0009 = {"alert_events"}
MAIL_0010 = {"outgoing_mail"}


def _tables(url: str) -> set[str]:
    engine = open_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"cp_alembic_version"}
    finally:
        engine.dispose()


def _columns(url: str, table: str) -> list[dict[str, object]]:
    engine = open_engine(url)
    try:
        return list(inspect(engine).get_columns(table))  # type: ignore[arg-type]
    finally:
        engine.dispose()


@BOTH
def test_upgrade_from_empty_builds_exactly_the_models(empty_db_url: str) -> None:
    assert current_revision(empty_db_url) is None
    upgrade_db(empty_db_url)
    assert current_revision(empty_db_url) == head_revision() == "0010"
    assert _tables(empty_db_url) == set(Base.metadata.tables)
    engine = open_engine(empty_db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            # Types compare loosely across dialects; names, columns, keys, indexes must match.
            diffs = compare_metadata(context, Base.metadata)
            assert diffs == []
            roles = connection.execute(select(Role.id, Role.builtin)).all()
            assert sorted(roles) == [("admin", True), ("member", True), ("owner", True),
                                     ("viewer", True)]
    finally:
        engine.dispose()


@BOTH
def test_downgrade_and_upgrade_round_trip(empty_db_url: str) -> None:
    upgrade_db(empty_db_url)
    downgrade(empty_db_url, "0009")
    assert not MAIL_0010 & _tables(empty_db_url)
    downgrade(empty_db_url, "0008")
    assert not ACTIVITY_0009 & _tables(empty_db_url)
    downgrade(empty_db_url, "0007")
    assert "serves_new_projects" not in {c["name"] for c in _columns(empty_db_url,
                                                                     "data_planes")}
    downgrade(empty_db_url, "0005")
    assert current_revision(empty_db_url) == "0005"
    assert not NOTIFICATIONS_0007 & _tables(empty_db_url)
    alert_columns = {c["name"] for c in _columns(empty_db_url, "alert_definitions")}
    assert "enabled" in alert_columns
    assert not {"paused", "muted", "evaluation_state", "stage"} & alert_columns
    downgrade(empty_db_url, "0004")
    assert current_revision(empty_db_url) == "0004"
    assert not FEDERATION_0005 & _tables(empty_db_url)
    assert "data_plane_id" not in {c["name"] for c in _columns(empty_db_url, "projects")}
    assert "public_jwk" not in {c["name"] for c in _columns(empty_db_url, "data_planes")}
    downgrade(empty_db_url, "0003")
    assert current_revision(empty_db_url) == "0003"
    assert "email_verified_at" not in {c["name"] for c in _columns(empty_db_url, "users")}
    assert not {"org_domains", "email_verifications", "sso_mfa_tickets"} & _tables(empty_db_url)
    downgrade(empty_db_url, "0002")
    assert current_revision(empty_db_url) == "0002"
    assert "message" not in {c["name"] for c in _columns(empty_db_url, "evaluator_versions")}
    downgrade(empty_db_url, "0001")
    assert current_revision(empty_db_url) == "0001"
    assert _tables(empty_db_url) == (set(Base.metadata.tables) - CONFIG_TABLES - IDENTITY_0004
                                        - FEDERATION_0005 - NOTIFICATIONS_0007
                                        - ACTIVITY_0009 - MAIL_0010)
    downgrade(empty_db_url, "base")
    assert current_revision(empty_db_url) is None
    assert _tables(empty_db_url) == set()
    upgrade_db(empty_db_url)
    assert current_revision(empty_db_url) == "0010"
    assert _tables(empty_db_url) == set(Base.metadata.tables)


@BOTH
def test_upgrade_is_idempotent(empty_db_url: str) -> None:
    upgrade_db(empty_db_url)
    upgrade_db(empty_db_url)  # nothing to do, nothing fails, roles not seeded twice
    engine = open_engine(empty_db_url)
    try:
        with engine.connect() as connection:
            assert len(connection.execute(select(Role.id)).all()) == 4
    finally:
        engine.dispose()
