"""Organizations → workspaces → projects: creation, lookup, renaming.

Lookups return the row or raise :class:`NotFound`; callers then :func:`authorize` on the
row's :func:`resource_of`. Names are unique within their parent (409 otherwise). Creating
an organization makes its creator its owner.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from apiary.control._common import new_id
from apiary.control.authz import Resource
from apiary.control.dataplanes import new_project_data_plane
from apiary.control.db import Membership, Organization, Project, Workspace
from apiary.control.service import ControlPlane
from apiary.errors import Conflict, InvalidRequest, NotFound


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("a name must have 1 to 200 characters", field="name")
    return name


def resource_of(node: Organization | Workspace | Project) -> Resource:
    """The authorization resource of a tenancy row."""
    if isinstance(node, Organization):
        return Resource(node.id)
    if isinstance(node, Workspace):
        return Resource(node.org_id, node.id)
    return Resource(node.org_id, node.workspace_id, node.id)


def get_org(db: Session, org_id: str) -> Organization:
    org = db.get(Organization, org_id)
    if org is None:
        raise NotFound("organization not found")
    return org


def get_workspace(db: Session, workspace_id: str) -> Workspace:
    workspace = db.get(Workspace, workspace_id)
    if workspace is None:
        raise NotFound("workspace not found")
    return workspace


def get_project(db: Session, project_id: str) -> Project:
    project = db.get(Project, project_id)
    if project is None:
        raise NotFound("project not found", project_id=project_id)
    return project


def create_org(
    cp: ControlPlane, db: Session, *, name: str, owner_user_id: str | None
) -> Organization:
    """A new organization; ``owner_user_id`` (if any) becomes its owner."""
    now = cp.now()
    org = Organization(id=new_id(), name=_clean_name(name), created_by=owner_user_id,
                       created_at=now)
    db.add(org)
    db.flush()
    if owner_user_id is not None:
        db.add(Membership(
            id=new_id(), user_id=owner_user_id, org_id=org.id, scope_id=org.id,
            role_id="owner", created_at=now,
        ))
        db.flush()
    return org


def create_workspace(cp: ControlPlane, db: Session, org: Organization, name: str) -> Workspace:
    name = _clean_name(name)
    if db.execute(
        select(Workspace.id).where(Workspace.org_id == org.id, Workspace.name == name)
    ).first():
        raise Conflict("a workspace with this name exists in the organization", field="name")
    workspace = Workspace(id=new_id(), org_id=org.id, name=name, created_at=cp.now())
    db.add(workspace)
    db.flush()
    return workspace


def create_project(cp: ControlPlane, db: Session, workspace: Workspace, name: str) -> Project:
    """A new project, assigned (in this transaction) to the data plane that serves new
    projects when one is marked (:func:`~apiary.control.dataplanes.new_project_data_plane`)."""
    name = _clean_name(name)
    if db.execute(
        select(Project.id).where(Project.workspace_id == workspace.id, Project.name == name)
    ).first():
        raise Conflict("a project with this name exists in the workspace", field="name")
    project = Project(id=new_id(), org_id=workspace.org_id, workspace_id=workspace.id,
                      name=name, created_at=cp.now(),
                      data_plane_id=new_project_data_plane(db, workspace.org_id))
    db.add(project)
    db.flush()
    return project


def rename(db: Session, node: Organization | Workspace | Project, name: str) -> None:
    name = _clean_name(name)
    if isinstance(node, Workspace):
        clash = select(Workspace.id).where(
            Workspace.org_id == node.org_id, Workspace.name == name, Workspace.id != node.id
        )
    elif isinstance(node, Project):
        clash = select(Project.id).where(
            Project.workspace_id == node.workspace_id, Project.name == name,
            Project.id != node.id,
        )
    else:
        node.name = name
        return
    if db.execute(clash).first():
        raise Conflict("that name is taken", field="name")
    node.name = name


def list_workspaces(db: Session, org_id: str) -> list[Workspace]:
    return list(db.scalars(
        select(Workspace).where(Workspace.org_id == org_id).order_by(Workspace.name)
    ))


def list_projects(db: Session, workspace_id: str) -> list[Project]:
    return list(db.scalars(
        select(Project).where(Project.workspace_id == workspace_id).order_by(Project.name)
    ))


def list_orgs(db: Session, org_ids: set[str]) -> list[Organization]:
    if not org_ids:
        return []
    return list(db.scalars(
        select(Organization).where(Organization.id.in_(org_ids)).order_by(Organization.name)
    ))
