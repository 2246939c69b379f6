"""Evaluator configurations: metric definitions with immutable versions and a deployment.

An evaluator (name unique per project) is ``python`` (code run in the data plane's
sandbox), ``llm`` (a judge prompt: ``criteria``) or ``human`` (a rubric: ``criteria``).
Each version fixes the return type, pass range, sampling percentage and event filters.
Deploying marks one version as the one the project runs; a disabled evaluator runs none.
An evaluator can be renamed and deleted (with its versions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from apiary.control._common import new_id
from apiary.control.db import EvaluatorConfig, EvaluatorVersion, Project
from apiary.control.service import ControlPlane
from apiary.errors import Conflict, InvalidRequest, NotFound

EVALUATOR_TYPES = ("python", "llm", "human")
RETURN_TYPES = ("float", "boolean", "string", "categorical")


@dataclass(frozen=True, slots=True)
class VersionSpec:
    """What one evaluator version defines."""

    criteria: str | None
    code: str | None
    return_type: str
    pass_min: float | None
    pass_max: float | None
    sampling_pct: float
    filters: dict[str, Any]
    model_params: dict[str, Any]
    message: str | None = None


@dataclass(frozen=True, slots=True)
class EvaluatorView:
    evaluator: EvaluatorConfig
    versions: list[EvaluatorVersion]


def _check_spec(kind: str, spec: VersionSpec) -> None:
    if spec.return_type not in RETURN_TYPES:
        raise InvalidRequest(f"return_type must be one of {', '.join(RETURN_TYPES)}",
                             field="return_type")
    if kind == "python" and not spec.code:
        raise InvalidRequest("a python evaluator needs code", field="code")
    if kind in ("llm", "human") and not spec.criteria:
        raise InvalidRequest(f"an {kind} evaluator needs criteria", field="criteria")
    if not 0 <= spec.sampling_pct <= 100:
        raise InvalidRequest("sampling_pct is a percentage (0-100)", field="sampling_pct")
    if spec.pass_min is not None and spec.pass_max is not None and spec.pass_min > spec.pass_max:
        raise InvalidRequest("pass_min is above pass_max", field="pass_min")


def create_evaluator(
    cp: ControlPlane, db: Session, project: Project, *, name: str, kind: str,
    description: str, spec: VersionSpec, author: str,
) -> EvaluatorView:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("an evaluator name must have 1 to 200 characters", field="name")
    if kind not in EVALUATOR_TYPES:
        raise InvalidRequest(f"type must be one of {', '.join(EVALUATOR_TYPES)}", field="type")
    _check_spec(kind, spec)
    if db.execute(select(EvaluatorConfig.id).where(
        EvaluatorConfig.project_id == project.id, EvaluatorConfig.name == name
    )).first():
        raise Conflict("an evaluator with this name exists in the project", field="name")
    now = cp.now()
    evaluator = EvaluatorConfig(
        id=new_id(), org_id=project.org_id, workspace_id=project.workspace_id,
        project_id=project.id, name=name, type=kind, description=description, enabled=True,
        deployed_version=None, created_by=author, created_at=now, updated_at=now,
    )
    db.add(evaluator)
    db.flush()
    add_version(cp, db, evaluator, spec, author)
    return view(db, evaluator)


def add_version(
    cp: ControlPlane, db: Session, evaluator: EvaluatorConfig, spec: VersionSpec, author: str
) -> EvaluatorVersion:
    _check_spec(evaluator.type, spec)
    latest = db.execute(select(func.max(EvaluatorVersion.version))
                        .where(EvaluatorVersion.evaluator_id == evaluator.id)).scalar_one()
    version = EvaluatorVersion(
        id=new_id(), evaluator_id=evaluator.id, org_id=evaluator.org_id,
        project_id=evaluator.project_id, version=(latest or 0) + 1, criteria=spec.criteria,
        code=spec.code, return_type=spec.return_type, pass_min=spec.pass_min,
        pass_max=spec.pass_max, sampling_pct=spec.sampling_pct, filters=spec.filters,
        model_params=spec.model_params, message=spec.message, created_by=author,
        created_at=cp.now(),
    )
    db.add(version)
    evaluator.updated_at = cp.now()
    db.flush()
    return version


def get_evaluator(db: Session, project: Project, evaluator_id: str) -> EvaluatorConfig:
    evaluator = db.get(EvaluatorConfig, evaluator_id)
    if evaluator is None or evaluator.project_id != project.id:
        raise NotFound("evaluator not found")
    return evaluator


def list_evaluators(db: Session, project: Project) -> list[EvaluatorView]:
    return [view(db, e) for e in db.scalars(
        select(EvaluatorConfig).where(EvaluatorConfig.project_id == project.id)
        .order_by(EvaluatorConfig.name)
    )]


def view(db: Session, evaluator: EvaluatorConfig) -> EvaluatorView:
    versions = list(db.scalars(
        select(EvaluatorVersion).where(EvaluatorVersion.evaluator_id == evaluator.id)
        .order_by(EvaluatorVersion.version)
    ))
    return EvaluatorView(evaluator, versions)


def deploy(cp: ControlPlane, db: Session, evaluator: EvaluatorConfig, number: int) -> None:
    """Make version ``number`` the one the project runs (404 for an unknown version)."""
    exists = db.execute(select(EvaluatorVersion.id).where(
        EvaluatorVersion.evaluator_id == evaluator.id, EvaluatorVersion.version == number
    )).first()
    if exists is None:
        raise NotFound(f"version {number} of this evaluator not found")
    evaluator.deployed_version = number
    evaluator.updated_at = cp.now()


def update_evaluator(
    cp: ControlPlane, evaluator: EvaluatorConfig, *, enabled: bool | None,
    description: str | None, name: str | None = None, db: Session | None = None,
) -> None:
    """Enable/disable, describe, rename (``db`` needed to check the new name is free)."""
    if name is not None and name.strip() != evaluator.name:
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidRequest("an evaluator name must have 1 to 200 characters",
                                 field="name")
        assert db is not None, "renaming needs the session"
        if db.execute(select(EvaluatorConfig.id).where(
            EvaluatorConfig.project_id == evaluator.project_id, EvaluatorConfig.name == name
        )).first():
            raise Conflict("an evaluator with this name exists in the project", field="name")
        evaluator.name = name
    if enabled is not None:
        evaluator.enabled = enabled
    if description is not None:
        evaluator.description = description
    evaluator.updated_at = cp.now()


def delete_evaluator(db: Session, evaluator: EvaluatorConfig) -> None:
    """Delete the evaluator and its versions."""
    db.execute(delete(EvaluatorVersion).where(EvaluatorVersion.evaluator_id == evaluator.id))
    db.delete(evaluator)
    db.flush()
