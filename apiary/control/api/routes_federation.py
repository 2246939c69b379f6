"""Federation endpoints: creating data planes and their bootstrap tokens, their
registration, their status and health, the operator's commands, and which data plane
serves a project (docs/architecture.md, "Federation").

- ``POST /v1/data-planes`` — a new federated data plane and its one-time bootstrap token
  (an installation admin; for a data plane dedicated to an org, also that org's owner);
  needs a recent login.
- ``POST /v1/data-planes/register`` — the data plane registers its public key with the
  token (no other credential; throttled per client address like login).
- ``GET /v1/data-planes`` and ``GET /v1/data-planes/{id}`` — status, last health report,
  versions, projects; the detail adds the last hour of health and the commands.
- ``POST /v1/data-planes/{id}/revoke|drain|rotate-key`` — commands for its stream.
- ``PUT /v1/data-planes/{id}/serves-new-projects`` — the data plane new projects are
  assigned to (an installation admin; at most one).
- ``PUT /v1/projects/{project_id}/data-plane`` — assign a project (``project:manage``).

Every write is one cpdb transaction: when a route answers, the change, its config-log
entry and any command for the stream are durable. The control plane's controller
delivers commands when the data plane is (or next is) connected.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request

import apiary
from apiary.control import federation
from apiary.control.api._guards import (
    ANYONE_AUTHENTICATED,
    PUBLIC,
    Caller,
    Checker,
    Deferred,
    On,
    Scope,
    require_recent_authentication,
)
from apiary.control.api.schemas import ProjectOut
from apiary.control.api.schemas_federation import (
    CommandOut,
    DataPlaneCreate,
    DataPlaneCreated,
    DataPlaneDetailOut,
    DataPlaneRegister,
    DataPlaneRegistered,
    DataPlaneStatusOut,
    DrainRequest,
    ProjectDataPlaneSet,
    ServesNewProjectsSet,
)
from apiary.control.authz import KeyPrincipal, Principal, SystemPrincipal, UserPrincipal
from apiary.control.dataplanes import set_serves_new_projects
from apiary.control.db import DataPlane, DataPlaneCommand, DataPlaneHealth, Project, User
from apiary.control.permissions import Permission as P
from apiary.control.service import ControlPlane
from apiary.control.tenancy import get_org, get_project, resource_of
from apiary.control.throttle import client_address
from apiary.errors import InvalidRequest, PermissionDenied

router = APIRouter(tags=["data planes"])

Public = Annotated[ControlPlane, Depends(PUBLIC)]
Anyone = Annotated[Caller, Depends(ANYONE_AUTHENTICATED)]
#: Managing a data plane: an installation admin, or ``org:manage`` on the org it is
#: dedicated to (the owner); both need a recent login (``org:manage`` is recent-auth).
Manager = Annotated[Checker, Depends(Deferred(P.ORG_MANAGE))]
ProjectManager = Annotated[Scope, Depends(On(P.PROJECT_MANAGE, "project"))]
#: How long after its last message a data plane still counts as connected (a controller
#: that died cannot clear ``connected``).
_CONNECTED_GRACE = 3.0
_HISTORY = timedelta(hours=1)


def _orgs(principal: Principal) -> set[str] | None:
    """The orgs whose dedicated data planes the caller may see (None: all)."""
    if isinstance(principal, UserPrincipal):
        return {g.org_id for g in principal.grants.values()}
    if isinstance(principal, KeyPrincipal):
        return {principal.org_id}
    return None


def _is_admin(db: Session, principal: Principal) -> bool:
    if isinstance(principal, SystemPrincipal):
        return True
    if not isinstance(principal, UserPrincipal):
        return False
    user = db.get(User, principal.user_id)
    return user is not None and user.is_instance_admin


def _visible_orgs(db: Session, principal: Principal) -> set[str] | None:
    return None if _is_admin(db, principal) else _orgs(principal)


def _authorize_manage(checker: Checker, db: Session, org_id: str | None) -> None:
    """An installation admin manages every data plane; an org's owner (``org:manage``)
    those dedicated to the org. Both with a recent login."""
    if _is_admin(db, checker.principal):
        require_recent_authentication(checker.cp, checker.principal, P.ORG_MANAGE)
        return
    if org_id is None:
        raise PermissionDenied("only an installation admin creates or manages shared data "
                               "planes; name the org_id of a data plane dedicated to your "
                               "organization")
    checker.check(resource_of(get_org(db, org_id)))


def _connected(cp: ControlPlane, plane: DataPlane) -> bool:
    if not plane.connected or plane.last_seen_at is None:
        return False
    interval = cp.settings.federation_health_interval_s
    grace = timedelta(seconds=max(15.0, _CONNECTED_GRACE * interval))
    return cp.now() - plane.last_seen_at <= grace


def _status_out(cp: ControlPlane, db: Session, plane: DataPlane,
                org_ids: set[str] | None = None) -> DataPlaneStatusOut:
    """``projects`` lists only those of ``org_ids`` (None: all): a shared data plane's
    other tenants' projects are not the caller's to see."""
    statement = select(Project.id).where(Project.data_plane_id == plane.id)
    if org_ids is not None:
        statement = statement.where(Project.org_id.in_(org_ids))
    projects = list(db.scalars(statement.order_by(Project.id)))
    return DataPlaneStatusOut(
        id=plane.id, name=plane.name, url=plane.url, org_id=plane.org_id,
        status=plane.status, federated=plane.federated,  # type: ignore[arg-type]
        connected=_connected(cp, plane), draining=plane.draining,
        last_seen_at=plane.last_seen_at, version=plane.apiary_version,
        versions=plane.versions, last_health=plane.last_health,
        applied_config_version=plane.applied_config_version, projects=projects,
        created_at=plane.created_at, serves_new_projects=plane.serves_new_projects,
    )


@router.post("/v1/data-planes", status_code=201, response_model=DataPlaneCreated,
             summary="Create a federated data plane and its one-time bootstrap token "
             "(shown once)")
def create_data_plane(body: DataPlaneCreate, checker: Manager) -> DataPlaneCreated:
    cp = checker.cp
    with cp.transaction() as db:
        _authorize_manage(checker, db, body.org_id)
        plane, token = federation.create_data_plane(
            db, name=body.name.strip(), url=body.url, org_id=body.org_id, now=cp.now(),
            bootstrap_ttl_s=body.bootstrap_ttl_s)
        assert plane.bootstrap_expires_at is not None
        return DataPlaneCreated(id=plane.id, name=plane.name, url=plane.url,
                                org_id=plane.org_id, bootstrap_token=token,
                                bootstrap_expires_at=plane.bootstrap_expires_at)


@router.post("/v1/data-planes/register", response_model=DataPlaneRegistered,
             summary="A data plane registers its ECDSA P-256 public key with its one-time "
             "bootstrap token")
def register_data_plane(body: DataPlaneRegister, request: Request,
                        cp: Public) -> DataPlaneRegistered:
    """401 for an unknown token, 410 for a used or expired one, 400 for a JWK that is not a
    P-256 public key. Throttled per client address (429 + Retry-After)."""
    cp.throttle.admit_attempt(client_address(request, cp.settings.cp_trusted_proxies))
    with cp.transaction() as db:
        plane = federation.register_data_plane_key(
            db, bootstrap_token=body.bootstrap_token, public_jwk=body.public_jwk,
            apiary_version=body.apiary_version, now=cp.now())
        return DataPlaneRegistered(
            data_plane_id=plane.id, name=plane.name, issuer=cp.issuer,
            jwks_url=f"{cp.issuer}/.well-known/jwks.json",
            federation_endpoint=cp.settings.federation_endpoint_advertised,
            federation_tls=cp.settings.federation_serves_tls,
            control_plane_version=apiary.__version__)


@router.get("/v1/data-planes", response_model=list[DataPlaneStatusOut], tags=["tokens"],
            summary="Data planes the caller can see and get tokens for, with their status, "
            "last health report, versions and projects")
def list_data_planes(caller: Anyone) -> list[DataPlaneStatusOut]:
    with caller.cp.transaction() as db:
        orgs = _visible_orgs(db, caller.principal)
        return [_status_out(caller.cp, db, p, orgs)
                for p in federation.visible_data_planes(db, orgs)]


@router.get("/v1/data-planes/{data_plane_id}", response_model=DataPlaneDetailOut,
            summary="One data plane: status, health of the last hour, commands")
def get_data_plane(data_plane_id: str, caller: Anyone) -> DataPlaneDetailOut:
    cp = caller.cp
    with cp.transaction() as db:
        orgs = _visible_orgs(db, caller.principal)
        plane = federation.get_data_plane(db, data_plane_id, orgs)
        since = cp.now() - _HISTORY
        history = [{**row.report, "at": row.at.isoformat()} for row in db.scalars(
            select(DataPlaneHealth).where(DataPlaneHealth.data_plane_id == plane.id,
                                          DataPlaneHealth.at >= since)
            .order_by(DataPlaneHealth.at, DataPlaneHealth.id))]
        commands = [CommandOut.model_validate(c) for c in db.scalars(
            select(DataPlaneCommand).where(DataPlaneCommand.data_plane_id == plane.id)
            .order_by(DataPlaneCommand.created_at.desc()).limit(50))]
        status = _status_out(cp, db, plane, orgs)
        return DataPlaneDetailOut(**status.model_dump(), health_history=history,
                                  commands=commands)


def _managed(checker: Checker, db: Session, data_plane_id: str) -> DataPlane:
    plane = federation.get_data_plane(db, data_plane_id, _visible_orgs(db, checker.principal))
    _authorize_manage(checker, db, plane.org_id)
    return plane


@router.post("/v1/data-planes/{data_plane_id}/revoke", response_model=DataPlaneStatusOut,
             summary="Revoke a data plane for good: its stream is closed, its identity and "
             "token requests refused")
def revoke(data_plane_id: str, checker: Manager) -> DataPlaneStatusOut:
    cp = checker.cp
    with cp.transaction() as db:
        plane = _managed(checker, db, data_plane_id)
        federation.revoke_data_plane(db, plane, reason=f"revoked by {checker.principal.subject}",
                                     now=cp.now())
        return _status_out(cp, db, plane)


@router.post("/v1/data-planes/{data_plane_id}/drain", status_code=202, response_model=CommandOut,
             summary="Tell a data plane to stop (or resume) accepting ingestion")
def drain(data_plane_id: str, body: DrainRequest, checker: Manager) -> CommandOut:
    cp = checker.cp
    with cp.transaction() as db:
        plane = _managed(checker, db, data_plane_id)
        _require_active(plane)
        command = federation.queue_command(db, plane, "drain", {"enabled": body.enabled},
                                           cp.now())
        return CommandOut.model_validate(command)


@router.post("/v1/data-planes/{data_plane_id}/rotate-key", status_code=202,
             response_model=CommandOut,
             summary="Tell a data plane to generate a new key pair and register its public key")
def rotate_key(data_plane_id: str, checker: Manager) -> CommandOut:
    cp = checker.cp
    with cp.transaction() as db:
        plane = _managed(checker, db, data_plane_id)
        _require_active(plane)
        command = federation.queue_command(db, plane, "rotate_key", {}, cp.now())
        return CommandOut.model_validate(command)


@router.put("/v1/data-planes/{data_plane_id}/serves-new-projects",
            response_model=DataPlaneStatusOut,
            summary="Make a data plane the one new projects are assigned to (or none)")
def serves_new_projects(data_plane_id: str, body: ServesNewProjectsSet,
                        checker: Manager) -> DataPlaneStatusOut:
    """An installation admin only, with a recent login (403 otherwise, org owners
    included: the choice spans every organization). ``enabled`` true marks an active
    federated data plane (409 for a legacy, pending or revoked one) and unmarks any other;
    false unmarks it. Projects that exist keep their data plane; a project created from
    then on is assigned to the marked one in its creating transaction. Durable when it
    answers."""
    cp = checker.cp
    with cp.transaction() as db:
        plane = federation.get_data_plane(db, data_plane_id,
                                          _visible_orgs(db, checker.principal))
        if not _is_admin(db, checker.principal):
            raise PermissionDenied("only an installation admin chooses the data plane of "
                                   "new projects", data_plane_id=plane.id)
        require_recent_authentication(cp, checker.principal, P.ORG_MANAGE)
        set_serves_new_projects(db, plane, body.enabled)
        return _status_out(cp, db, plane)


def _require_active(plane: DataPlane) -> None:
    if plane.status != "active":
        raise InvalidRequest(f"this data plane is {plane.status}: only an active data plane "
                             "takes commands", field="data_plane_id")


@router.put("/v1/projects/{project_id}/data-plane", response_model=ProjectOut,
            summary="Assign the project to a federated data plane (null: unassign)")
def set_project_data_plane(project_id: str, body: ProjectDataPlaneSet,
                           scope: ProjectManager) -> ProjectOut:
    """The data plane must be federated and not revoked, and shared or dedicated to the
    project's organization (400 otherwise). The data plane receives the project and its
    whole configuration on its stream (a replay of the project's config log)."""
    with scope.cp.transaction() as db:
        project = get_project(db, project_id)
        if body.data_plane_id is not None:
            plane = db.get(DataPlane, body.data_plane_id)
            if plane is None or (plane.org_id is not None and plane.org_id != project.org_id):
                raise InvalidRequest("no data plane with this id serves this project's "
                                     "organization", field="data_plane_id")
            if not plane.federated or plane.status == "revoked":
                raise InvalidRequest(f"data plane {plane.id} is "
                                     f"{'revoked' if plane.federated else 'a legacy audience'}"
                                     ": assign a federated, unrevoked data plane",
                                     field="data_plane_id")
        project.data_plane_id = body.data_plane_id
        db.flush()
        return ProjectOut.model_validate(project)
