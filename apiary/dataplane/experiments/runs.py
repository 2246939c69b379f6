"""Experiment runs in dpdb: what a run is (its name, status, configuration, dataset and the
dataset version it ran on, the sessions it produced), never what it measured — results are
computed from the events in ClickHouse (:mod:`apiary.dataplane.experiments.results`).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from apiary.dataplane.db import Owner, utcnow
from apiary.dataplane.db.models import RUN_STATUSES, ExperimentRun
from apiary.errors import Conflict, InvalidRequest, NotFound

MAX_RUN_ID = 128
MAX_LIST_IDS = 100_000
SORTABLE = {"created_at": ExperimentRun.created_at, "updated_at": ExperimentRun.updated_at,
            "name": ExperimentRun.name, "status": ExperimentRun.status}


def _check_status(status: str) -> str:
    if status not in RUN_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(RUN_STATUSES)}", field="status")
    return status


def _check_ids(ids: Sequence[str], what: str) -> list[str]:
    if len(ids) > MAX_LIST_IDS:
        raise InvalidRequest(f"at most {MAX_LIST_IDS} {what}", field=what, limit=MAX_LIST_IDS)
    return list(dict.fromkeys(ids))


def create_run(db: Session, owner: Owner, *, run_id: str | None, name: str | None,
               description: str | None, status: str | None, dataset_id: str | None,
               dataset_version_id: str | None, metadata: dict[str, Any] | None,
               results: dict[str, Any] | None, configuration: dict[str, Any] | None,
               event_ids: Sequence[str] | None, session_ids: Sequence[str] | None,
               datapoint_ids: Sequence[str] | None, evaluators: Sequence[Any] | None,
               passing_ranges: dict[str, Any] | None) -> ExperimentRun:
    """Record a new run of ``owner``'s project (409 if its id is taken there)."""
    run_id = run_id if run_id is not None else str(uuid.uuid4())
    if not run_id or len(run_id) > MAX_RUN_ID:
        raise InvalidRequest(f"run_id must have 1 to {MAX_RUN_ID} characters", field="run_id")
    if db.get(ExperimentRun, (owner.project_id, run_id)) is not None:
        raise Conflict("a run with this run_id exists in the project", field="run_id")
    now = utcnow()
    run = ExperimentRun(
        project_id=owner.project_id, id=run_id, org_id=owner.org_id,
        workspace_id=owner.workspace_id, name=name or f"experiment-{run_id[:8]}",
        description=description, status=_check_status(status or "pending"),
        dataset_id=dataset_id, dataset_version_id=dataset_version_id,
        meta=dict(metadata or {}), results=dict(results or {}),
        configuration=dict(configuration or {}),
        event_ids=_check_ids(event_ids or [], "event_ids"),
        session_ids=_check_ids(session_ids or [], "session_ids"),
        datapoint_ids=_check_ids(datapoint_ids or [], "datapoint_ids"),
        evaluators=list(evaluators or []), passing_ranges=dict(passing_ranges or {}),
        is_active=True, created_by=owner.subject, created_at=now, updated_at=now,
    )
    db.add(run)
    db.flush()
    return run


def get_run(db: Session, project_id: str, run_id: str) -> ExperimentRun:
    run = db.get(ExperimentRun, (project_id, run_id))
    if run is None:
        raise NotFound("experiment run not found", project_id=project_id)
    return run


def update_run(db: Session, run: ExperimentRun, changes: Mapping[str, Any]) -> None:
    """Apply an update: scalars and lists replace, ``metadata``, ``configuration``,
    ``results`` and ``passing_ranges`` are merged key by key (shallow)."""
    for name in ("name", "description"):
        if changes.get(name) is not None:
            setattr(run, name, changes[name])
    if changes.get("status") is not None:
        run.status = _check_status(changes["status"])
    for name, attribute in (("metadata", "meta"), ("configuration", "configuration"),
                            ("results", "results"), ("passing_ranges", "passing_ranges")):
        if changes.get(name) is not None:
            setattr(run, attribute, {**getattr(run, attribute), **changes[name]})
    for name in ("event_ids", "session_ids", "datapoint_ids"):
        if changes.get(name) is not None:
            setattr(run, name, _check_ids(changes[name], name))
    if changes.get("evaluators") is not None:
        run.evaluators = list(changes["evaluators"])
    run.updated_at = utcnow()
    db.flush()


def delete_run(db: Session, run: ExperimentRun) -> None:
    db.delete(run)
    db.flush()


@dataclass(frozen=True, slots=True)
class RunPage:
    runs: list[ExperimentRun]
    total: int
    total_unfiltered: int
    page: int
    limit: int

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total / self.limit) if self.total else 0


def list_runs(db: Session, project_id: str, *, dataset_id: str | None = None,
              run_ids: Sequence[str] | None = None, name: str | None = None,
              status: str | None = None, created_from: datetime | None = None,
              created_to: datetime | None = None, sort_by: str = "created_at",
              sort_order: str = "desc", page: int = 1, limit: int = 20) -> RunPage:
    """One page of the project's runs matching every given condition.

    ``name`` matches a substring (case-insensitive); ``sort_by`` is ``created_at``,
    ``updated_at``, ``name`` or ``status``; ``sort_order`` ``asc``/``desc``.
    """
    if sort_by not in SORTABLE:
        raise InvalidRequest(f"sort_by must be one of {', '.join(SORTABLE)}", field="sort_by")
    if sort_order not in ("asc", "desc"):
        raise InvalidRequest("sort_order must be asc or desc", field="sort_order")
    if status is not None:
        _check_status(status)
    conditions: list[ColumnElement[bool]] = [ExperimentRun.project_id == project_id]
    unfiltered = db.execute(select(func.count()).select_from(ExperimentRun)
                            .where(*conditions)).scalar_one()
    if dataset_id is not None:
        conditions.append(ExperimentRun.dataset_id == dataset_id)
    if run_ids:
        conditions.append(ExperimentRun.id.in_(_check_ids(run_ids, "run_ids")))
    if name:
        conditions.append(func.lower(ExperimentRun.name).contains(name.lower(),
                                                                  autoescape=True))
    if status is not None:
        conditions.append(ExperimentRun.status == status)
    if created_from is not None:
        conditions.append(ExperimentRun.created_at >= created_from)
    if created_to is not None:
        conditions.append(ExperimentRun.created_at <= created_to)
    total = db.execute(select(func.count()).select_from(ExperimentRun)
                       .where(*conditions)).scalar_one()
    column = SORTABLE[sort_by]
    order = column.asc() if sort_order == "asc" else column.desc()
    tie = ExperimentRun.id.asc() if sort_order == "asc" else ExperimentRun.id.desc()
    runs = list(db.scalars(select(ExperimentRun).where(*conditions).order_by(order, tie)
                           .offset((page - 1) * limit).limit(limit)))
    return RunPage(runs, int(total), int(unfiltered), page, limit)
