"""cpdb migration 0006 (alert rules) on PostgreSQL and SQLite: every alert stored in the
first shape (metric, aggregation, operator, threshold) reads as a valid rule afterwards,
``enabled`` becomes ``paused``, a rule that cannot be expressed is kept paused with the
reason; the downgrade writes the first shape back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from apiary.control.api.schemas_config import AlertCondition, AlertOut
from apiary.control.config.alerts import check_condition
from apiary.control.db import (
    AlertDefinition,
    Organization,
    Project,
    Workspace,
    downgrade,
    open_engine,
)
from apiary.control.db import upgrade as upgrade_db

BOTH = pytest.mark.parametrize("empty_db_url", ["sqlite", "postgresql"], indirect=True)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

LEGACY: dict[str, tuple[dict[str, Any], bool]] = {
    "budget": ({"metric": "cost", "aggregation": "sum", "operator": ">=", "threshold": 100,
                "window_s": 3600}, True),
    "slow": ({"metric": "latency", "aggregation": "p95", "operator": ">", "threshold": 2.0,
              "window_s": 300, "filters": {"event_type": "model"}}, True),
    "volume": ({"metric": "errors", "aggregation": "count", "operator": ">", "threshold": 5,
                "window_s": 30}, False),
    "score": ({"metric": "relevance", "aggregation": "avg", "operator": "<", "threshold": 3,
               "window_s": 40 * 86_400}, True),
    "exact": ({"metric": "cost", "aggregation": "sum", "operator": "==", "threshold": 1,
               "window_s": 600}, True),
}


def _tenancy(url: str) -> str:
    engine = open_engine(url)
    try:
        with Session(engine) as db, db.begin():
            db.add(Organization(id="org1", name="Org", created_by=None, created_at=NOW))
            db.flush()
            db.add(Workspace(id="ws1", org_id="org1", name="main", created_at=NOW))
            db.flush()
            db.add(Project(id="p1", org_id="org1", workspace_id="ws1", name="app",
                           created_at=NOW))
        return "p1"
    finally:
        engine.dispose()


def _insert_legacy(url: str, project_id: str) -> None:
    engine = open_engine(url)
    try:
        with engine.begin() as connection:
            for name, (condition, enabled) in LEGACY.items():
                connection.execute(sa.text(
                    "INSERT INTO alert_definitions (id, org_id, workspace_id, project_id, name, "
                    "description, condition, channels, enabled, created_by, created_at, "
                    "updated_at) VALUES (:id, 'org1', 'ws1', :p, :name, 'd', :c, '[]', :e, "
                    "NULL, :at, :at)"), {"id": f"a-{name}", "p": project_id, "name": name,
                                         "c": json.dumps(condition), "e": enabled, "at": NOW})
    finally:
        engine.dispose()


def _alerts(url: str) -> dict[str, AlertDefinition]:
    engine = open_engine(url)
    try:
        with Session(engine) as db:
            alerts = {a.name: a for a in db.scalars(sa.select(AlertDefinition))}
            db.expunge_all()
            return alerts
    finally:
        engine.dispose()


@BOTH
def test_stored_alerts_of_the_first_shape_become_readable_rules(empty_db_url: str) -> None:
    upgrade_db(empty_db_url)
    project_id = _tenancy(empty_db_url)
    downgrade(empty_db_url, "0005")
    _insert_legacy(empty_db_url, project_id)
    upgrade_db(empty_db_url)

    alerts = _alerts(empty_db_url)
    assert set(alerts) == set(LEGACY)
    for alert in alerts.values():  # each reads as the API answers, and is a valid rule
        out = AlertOut.model_validate(alert)
        assert check_condition(AlertCondition.model_validate(out.condition).model_dump(
            mode="json")) == out.condition
    assert alerts["budget"].condition["field"] == "cost"
    assert alerts["budget"].condition["warning"] == {"op": ">=", "value": 100.0}
    assert alerts["slow"].condition["field"] == "latency_p95"
    assert alerts["slow"].condition["filters"] == [
        {"field": "event_type", "operator": "is", "value": "model"}]
    assert alerts["volume"].condition["field"] == "event_count"
    assert alerts["volume"].condition["window_s"] == 60  # clamped to the minimum
    assert alerts["score"].condition["window_s"] == 7 * 86_400
    assert (alerts["score"].condition["field"],
            alerts["score"].condition["aggregation"]) == ("metrics.relevance", "mean")
    assert {n: a.state for n, a in alerts.items()} == {
        "budget": "active", "slow": "active", "volume": "paused", "score": "active",
        "exact": "paused"}
    assert "operator '=='" in alerts["exact"].description
    assert alerts["budget"].description == "d"


@BOTH
def test_the_downgrade_writes_the_first_shape_back(empty_db_url: str) -> None:
    upgrade_db(empty_db_url)
    project_id = _tenancy(empty_db_url)
    downgrade(empty_db_url, "0005")
    _insert_legacy(empty_db_url, project_id)
    upgrade_db(empty_db_url)
    downgrade(empty_db_url, "0005")
    engine = open_engine(empty_db_url)
    try:
        with engine.connect() as connection:
            rows = {r.name: r for r in connection.execute(sa.text(
                "SELECT name, condition, enabled FROM alert_definitions"))}
    finally:
        engine.dispose()
    budget = rows["budget"].condition
    budget = json.loads(budget) if isinstance(budget, str) else budget
    assert (budget["metric"], budget["operator"], budget["threshold"]) == ("cost", ">=", 100.0)
    slow = rows["slow"].condition
    slow = json.loads(slow) if isinstance(slow, str) else slow
    assert (slow["metric"], slow["aggregation"], slow["filters"]) == (
        "latency", "p95", {"event_type": "model"})
    assert {n: bool(r.enabled) for n, r in rows.items()} == {
        "budget": True, "slow": True, "volume": False, "score": True, "exact": False}
