"""dpdb tables: datasets, datapoints, dataset versions, experiment runs.

Every row carries the tenant (``org_id``, ``workspace_id``, ``project_id``) it belongs to;
every query filters on ``project_id``. The data plane holds no tenant tables (the control
plane owns tenancy), so the tenant columns are plain indexed text, not foreign keys.

- A **datapoint** is a project-level object (inputs, history, ground truth, metadata, the
  event it was made from); a **dataset** is an ordered list of datapoints
  (``dataset_datapoints``), and a datapoint may belong to several datasets.
- A **dataset version** is an immutable snapshot of a dataset's datapoints: ids *and*
  contents are copied into ``dataset_version_items``, so editing or deleting a datapoint
  later never changes what an experiment run was run on. A snapshot is identified by its
  id; ``content_hash`` lets an unchanged dataset reuse its latest snapshot.
- An **experiment run** (``experiment_runs``) is keyed by ``(project_id, id)``: run ids are
  chosen by clients (the SDK sends a UUID), so two projects may use the same one without
  learning of each other. Its results are never stored here: they are computed from the
  events in ClickHouse on each read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from apiary.dataplane.db._base import Base, UTCDateTime

RUN_STATUSES = ("pending", "running", "completed", "failed", "cancelled")


def _id() -> Any:
    return mapped_column(String(64), primary_key=True)


def _tenant(*, index: bool = False) -> Any:
    return mapped_column(String(64), index=index)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[str] = _id()
    org_id: Mapped[str] = _tenant()
    workspace_id: Mapped[str] = _tenant()
    project_id: Mapped[str] = _tenant(index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Datapoint(Base):
    __tablename__ = "datapoints"
    __table_args__ = (Index("ix_datapoints_project_id_linked_event", "project_id",
                            "linked_event"),)

    id: Mapped[str] = _id()
    org_id: Mapped[str] = _tenant()
    workspace_id: Mapped[str] = _tenant()
    project_id: Mapped[str] = _tenant()  # indexed with linked_event
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    history: Mapped[list[Any]] = mapped_column(JSON)
    ground_truth: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    linked_event: Mapped[str | None] = mapped_column(String(128))
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DatasetDatapoint(Base):
    """Membership of a datapoint in a dataset, at a position (the dataset's order)."""

    __tablename__ = "dataset_datapoints"

    dataset_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True
    )
    datapoint_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("datapoints.id", ondelete="CASCADE"), primary_key=True,
        index=True,
    )
    position: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)

    id: Mapped[str] = _id()
    dataset_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[str] = _tenant(index=True)
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    datapoint_count: Mapped[int] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(String(1000))
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DatasetVersionItem(Base):
    """A datapoint as it was when its dataset's version was taken."""

    __tablename__ = "dataset_version_items"

    version_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("dataset_versions.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    datapoint_id: Mapped[str] = mapped_column(String(64))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    history: Mapped[list[Any]] = mapped_column(JSON)
    ground_truth: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    linked_event: Mapped[str | None] = mapped_column(String(128))


class ExperimentRun(Base):
    __tablename__ = "experiment_runs"
    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in RUN_STATUSES) + ")", name="status"
        ),
        Index("ix_experiment_runs_project_id_created_at", "project_id", "created_at"),
    )

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    org_id: Mapped[str] = _tenant()
    workspace_id: Mapped[str] = _tenant()
    name: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    # A dataset of this project, or an offline one ("EXT-..."); not a foreign key, so
    # that deleting a dataset leaves the runs made on it readable.
    dataset_id: Mapped[str | None] = mapped_column(String(128), index=True)
    dataset_version_id: Mapped[str | None] = mapped_column(String(64))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    results: Mapped[dict[str, Any]] = mapped_column(JSON)
    configuration: Mapped[dict[str, Any]] = mapped_column(JSON)
    event_ids: Mapped[list[str]] = mapped_column(JSON)
    session_ids: Mapped[list[str]] = mapped_column(JSON)
    datapoint_ids: Mapped[list[str]] = mapped_column(JSON)
    evaluators: Mapped[list[Any]] = mapped_column(JSON)
    passing_ranges: Mapped[dict[str, Any]] = mapped_column(JSON)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
