"""Saved charts: the operations on dpdb.

Every function takes an open session and works inside the caller's transaction; every
lookup is scoped to one project (another project's chart ids are simply "not found").
What a chart plots is validated by the caller (the chart query language lives with the
store, :mod:`apiary.store._chart_spec`); here it is only kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from apiary.dataplane.db import Owner, utcnow
from apiary.dataplane.db.models_charts import Chart
from apiary.errors import NotFound

#: A project's charts listed at most (newest first).
MAX_CHARTS = 1000
#: Chart fields an update may change.
UPDATABLE = frozenset({"name", "description", "metric", "func", "group_by", "bucketing",
                       "date_range", "query", "owner_id", "is_active"})


def create_chart(db: Session, owner: Owner, fields: Mapping[str, Any]) -> Chart:
    """Save a chart in ``owner``'s project; ``fields`` holds :data:`UPDATABLE` keys
    (``name``, ``metric`` and ``bucketing`` required)."""
    now = utcnow()
    chart = Chart(
        id=str(uuid.uuid4()), org_id=owner.org_id, workspace_id=owner.workspace_id,
        project_id=owner.project_id, name=fields["name"],
        description=fields.get("description"), metric=fields["metric"],
        func=fields.get("func"), group_by=fields.get("group_by"),
        bucketing=fields["bucketing"], date_range=fields.get("date_range"),
        query=fields.get("query"), owner_id=fields.get("owner_id") or owner.subject,
        is_active=fields.get("is_active", True) is not False, created_by=owner.subject,
        created_at=now, updated_at=now,
    )
    db.add(chart)
    db.flush()
    return chart


def get_chart(db: Session, project_id: str, chart_id: str) -> Chart:
    """The project's chart ``chart_id``; NotFound if absent (or another project's)."""
    chart = db.get(Chart, chart_id)
    if chart is None or chart.project_id != project_id:
        raise NotFound("chart not found", project_id=project_id)
    return chart


def list_charts(db: Session, project_id: str) -> list[Chart]:
    """The project's charts, newest first (at most :data:`MAX_CHARTS`)."""
    query = (select(Chart).where(Chart.project_id == project_id)
             .order_by(Chart.created_at.desc(), Chart.id).limit(MAX_CHARTS))
    return list(db.scalars(query))


def update_chart(db: Session, chart: Chart, changes: Mapping[str, Any]) -> Chart:
    """Apply ``changes`` (keys of :data:`UPDATABLE`) and bump ``updated_at``."""
    for key, value in changes.items():
        if key not in UPDATABLE:
            raise ValueError(f"not an updatable chart field: {key}")
        setattr(chart, key, value)
    chart.updated_at = utcnow()
    db.flush()
    return chart


def delete_chart(db: Session, chart: Chart) -> None:
    db.delete(chart)
    db.flush()
