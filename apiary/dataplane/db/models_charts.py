"""dpdb table of saved charts (HoneyHive ``/v1/charts``).

A **chart** belongs to one project: a name and what to plot — ``metric``, ``func``,
``group_by``, ``bucketing``, ``date_range`` and ``query`` (filters), the fields of a
HoneyHive chart, kept as the caller sent them once validated (the query language is
:mod:`apiary.store._chart_spec`). Its data is never stored: it is computed from ClickHouse
on every read (``GET /v1/charts/{id}/data``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from apiary.dataplane.db._base import Base, UTCDateTime


class Chart(Base):
    __tablename__ = "charts"
    __table_args__ = (Index("ix_charts_project_id_created_at", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    metric: Mapped[str] = mapped_column(String(300))
    func: Mapped[str | None] = mapped_column(String(32))
    group_by: Mapped[str | None] = mapped_column(String(300))
    bucketing: Mapped[str] = mapped_column(String(16))
    date_range: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    query: Mapped[list[Any] | None] = mapped_column(JSON)
    owner_id: Mapped[str | None] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
