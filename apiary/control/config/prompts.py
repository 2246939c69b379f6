"""Prompt templates: immutable numbered versions, environments that point at versions, tags.

A template lives in a project and has a name unique there. Each change of body or model
parameters is a new version (1, 2, ...); versions are never edited. The environments
``dev``, ``staging`` and ``prod`` each serve one version, moved explicitly (or cleared).
A template can be renamed and deleted (with its versions and environments).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from apiary.control._common import new_id
from apiary.control.db import Project, PromptEnvironment, PromptTemplate, PromptVersion
from apiary.control.service import ControlPlane
from apiary.errors import Conflict, InvalidRequest, NotFound

ENVIRONMENTS = ("dev", "staging", "prod")


@dataclass(frozen=True, slots=True)
class TemplateView:
    """A template with all its versions (oldest first) and its environments."""

    template: PromptTemplate
    versions: list[PromptVersion]
    environments: dict[str, int]  # environment -> version number


def _clean_tags(tags: list[str]) -> list[str]:
    cleaned = sorted({t.strip() for t in tags if t.strip()})
    if any(len(t) > 100 for t in cleaned) or len(cleaned) > 50:
        raise InvalidRequest("at most 50 tags of at most 100 characters", field="tags")
    return cleaned


def create_template(
    cp: ControlPlane, db: Session, project: Project, *, name: str, body: str,
    model_params: dict[str, Any], tags: list[str], message: str | None, author: str,
) -> TemplateView:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("a template name must have 1 to 200 characters", field="name")
    if db.execute(select(PromptTemplate.id).where(
        PromptTemplate.project_id == project.id, PromptTemplate.name == name
    )).first():
        raise Conflict("a prompt template with this name exists in the project", field="name")
    now = cp.now()
    template = PromptTemplate(
        id=new_id(), org_id=project.org_id, workspace_id=project.workspace_id,
        project_id=project.id, name=name, tags=_clean_tags(tags), created_by=author,
        created_at=now, updated_at=now,
    )
    db.add(template)
    db.flush()
    add_version(cp, db, template, body=body, model_params=model_params, message=message,
                author=author)
    return view(db, template)


def get_template(db: Session, project: Project, template_id: str) -> PromptTemplate:
    template = db.get(PromptTemplate, template_id)
    if template is None or template.project_id != project.id:
        raise NotFound("prompt template not found")
    return template


def list_templates(db: Session, project: Project, name: str | None = None) -> list[TemplateView]:
    statement = select(PromptTemplate).where(PromptTemplate.project_id == project.id)
    if name is not None:
        statement = statement.where(PromptTemplate.name == name)
    return [view(db, t) for t in db.scalars(statement.order_by(PromptTemplate.name))]


def view(db: Session, template: PromptTemplate) -> TemplateView:
    versions = list(db.scalars(
        select(PromptVersion).where(PromptVersion.template_id == template.id)
        .order_by(PromptVersion.version)
    ))
    by_id = {v.id: v.version for v in versions}
    environments = {
        env.environment: by_id[env.version_id]
        for env in db.scalars(select(PromptEnvironment)
                              .where(PromptEnvironment.template_id == template.id))
    }
    return TemplateView(template, versions, environments)


def add_version(
    cp: ControlPlane, db: Session, template: PromptTemplate, *, body: str,
    model_params: dict[str, Any], message: str | None, author: str,
) -> PromptVersion:
    """Append the next version. Concurrent appends cannot share a number: the unique
    (template, version) constraint rejects the second, which surfaces as 409."""
    if not body:
        raise InvalidRequest("a prompt version needs a body", field="body")
    latest = db.execute(select(func.max(PromptVersion.version))
                        .where(PromptVersion.template_id == template.id)).scalar_one()
    version = PromptVersion(
        id=new_id(), template_id=template.id, org_id=template.org_id,
        project_id=template.project_id, version=(latest or 0) + 1, body=body,
        model_params=model_params, message=message, created_by=author, created_at=cp.now(),
    )
    db.add(version)
    template.updated_at = cp.now()
    db.flush()
    return version


def get_version(db: Session, template: PromptTemplate, number: int) -> PromptVersion:
    version = db.execute(select(PromptVersion).where(
        PromptVersion.template_id == template.id, PromptVersion.version == number
    )).scalar_one_or_none()
    if version is None:
        raise NotFound(f"version {number} of this template not found")
    return version


def set_environment(
    cp: ControlPlane, db: Session, template: PromptTemplate, environment: str, number: int,
    author: str,
) -> None:
    """Point ``environment`` at version ``number`` (404 for an unknown version)."""
    _check_environment(environment)
    version = get_version(db, template, number)
    current = db.get(PromptEnvironment, (template.id, environment))
    if current is None:
        db.add(PromptEnvironment(
            template_id=template.id, environment=environment, org_id=template.org_id,
            project_id=template.project_id, version_id=version.id, updated_by=author,
            updated_at=cp.now(),
        ))
    else:
        current.version_id = version.id
        current.updated_by = author
        current.updated_at = cp.now()
    db.flush()


def resolve_environment(db: Session, template: PromptTemplate, environment: str) -> PromptVersion:
    """The version ``environment`` serves (404 if it serves none)."""
    _check_environment(environment)
    current = db.get(PromptEnvironment, (template.id, environment))
    if current is None:
        raise NotFound(f"no version is deployed to {environment}")
    version = db.get(PromptVersion, current.version_id)
    assert version is not None
    return version


def clear_environment(cp: ControlPlane, db: Session, template: PromptTemplate,
                      environment: str) -> bool:
    """Make ``environment`` serve no version of the template; False if it served none."""
    _check_environment(environment)
    current = db.get(PromptEnvironment, (template.id, environment))
    if current is None:
        return False
    db.delete(current)
    template.updated_at = cp.now()
    db.flush()
    return True


def rename_template(cp: ControlPlane, db: Session, template: PromptTemplate, name: str) -> None:
    """Give the template another name, unique in its project (409 otherwise)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("a template name must have 1 to 200 characters", field="name")
    if name == template.name:
        return
    if db.execute(select(PromptTemplate.id).where(
        PromptTemplate.project_id == template.project_id, PromptTemplate.name == name
    )).first():
        raise Conflict("a prompt template with this name exists in the project", field="name")
    template.name = name
    template.updated_at = cp.now()
    db.flush()


def delete_template(db: Session, template: PromptTemplate) -> None:
    """Delete the template, its environments and its versions."""
    db.execute(delete(PromptEnvironment).where(PromptEnvironment.template_id == template.id))
    db.execute(delete(PromptVersion).where(PromptVersion.template_id == template.id))
    db.delete(template)
    db.flush()


def set_tags(cp: ControlPlane, template: PromptTemplate, tags: list[str]) -> None:
    template.tags = _clean_tags(tags)
    template.updated_at = cp.now()


def _check_environment(environment: str) -> None:
    if environment not in ENVIRONMENTS:
        raise InvalidRequest(f"environment must be one of {', '.join(ENVIRONMENTS)}",
                             field="environment")
