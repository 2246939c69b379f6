"""Alert definitions: a condition on a project's metrics and where to send notifications.

The control plane only stores them (create, read, update, delete); the data plane's
evaluators compute the metrics and the notifier delivers. ``condition`` says what to
watch (``metric``, ``aggregation``, ``operator``, ``threshold``, ``window_s``, optional
``filters``); ``channels`` are ``{"type": "email"|"slack"|"webhook", "target": ...}``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from apiary.control._common import new_id
from apiary.control.db import AlertDefinition, Project
from apiary.control.service import ControlPlane
from apiary.errors import Conflict, InvalidRequest, NotFound


def create_alert(
    cp: ControlPlane, db: Session, project: Project, *, name: str, description: str,
    condition: dict[str, Any], channels: list[dict[str, Any]], enabled: bool, author: str,
) -> AlertDefinition:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("an alert name must have 1 to 200 characters", field="name")
    _check_unique(db, project.id, name, None)
    now = cp.now()
    alert = AlertDefinition(
        id=new_id(), org_id=project.org_id, workspace_id=project.workspace_id,
        project_id=project.id, name=name, description=description, condition=condition,
        channels=channels, enabled=enabled, created_by=author, created_at=now, updated_at=now,
    )
    db.add(alert)
    db.flush()
    return alert


def _check_unique(db: Session, project_id: str, name: str, alert_id: str | None) -> None:
    statement = select(AlertDefinition.id).where(
        AlertDefinition.project_id == project_id, AlertDefinition.name == name
    )
    if alert_id is not None:
        statement = statement.where(AlertDefinition.id != alert_id)
    if db.execute(statement).first():
        raise Conflict("an alert with this name exists in the project", field="name")


def get_alert(db: Session, project: Project, alert_id: str) -> AlertDefinition:
    alert = db.get(AlertDefinition, alert_id)
    if alert is None or alert.project_id != project.id:
        raise NotFound("alert not found")
    return alert


def list_alerts(db: Session, project: Project) -> list[AlertDefinition]:
    return list(db.scalars(
        select(AlertDefinition).where(AlertDefinition.project_id == project.id)
        .order_by(AlertDefinition.name)
    ))


def update_alert(
    cp: ControlPlane, db: Session, alert: AlertDefinition, changes: dict[str, Any]
) -> AlertDefinition:
    """Apply ``changes`` (any of name, description, condition, channels, enabled)."""
    if "name" in changes:
        name = str(changes["name"]).strip()
        if not name or len(name) > 200:
            raise InvalidRequest("an alert name must have 1 to 200 characters", field="name")
        _check_unique(db, alert.project_id, name, alert.id)
        alert.name = name
    for field in ("description", "condition", "channels", "enabled"):
        if field in changes:
            setattr(alert, field, changes[field])
    alert.updated_at = cp.now()
    return alert


def delete_alert(db: Session, alert: AlertDefinition) -> None:
    db.delete(alert)
