"""Tenancy endpoints: organizations, workspaces, projects, memberships, invitations,
custom roles. Each route's guard states its permission (see :mod:`._guards`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.orm import Session

from apiary.control import invitations, memberships, roles, tenancy
from apiary.control.api._guards import USER, Caller, Checker, Deferred, On, Scope
from apiary.control.api.schemas import (
    AcceptInvitation,
    InvitationCreate,
    InvitationIssuedOut,
    InvitationOut,
    MembershipCreate,
    MembershipOut,
    NameRequest,
    OrgOut,
    ProjectOut,
    RoleChange,
    RoleCreate,
    RoleOut,
    RoleUpdate,
    WorkspaceOut,
)
from apiary.control.authz import Resource, may
from apiary.control.db import Invitation, Membership, Role, User
from apiary.control.identity.verification import require_verified
from apiary.control.permissions import Permission as P
from apiary.control.permissions import sorted_values
from apiary.errors import InvalidRequest

router = APIRouter(tags=["tenancy"])

UserCaller = Annotated[Caller, Depends(USER)]


def _role_out(role: Role) -> RoleOut:
    return RoleOut(id=role.id, name=role.name, builtin=role.builtin,
                   permissions=sorted_values(roles.role_permissions(role)))


def _membership_out(membership: Membership, role: Role) -> MembershipOut:
    return MembershipOut(id=membership.id, user_id=membership.user_id, org_id=membership.org_id,
                         workspace_id=membership.workspace_id,
                         project_id=membership.project_id, role=role.name)


def _invitation_out(invitation: Invitation, role: Role) -> InvitationOut:
    return InvitationOut(
        id=invitation.id, org_id=invitation.org_id, workspace_id=invitation.workspace_id,
        project_id=invitation.project_id, email=invitation.email, role=role.name,
        created_at=invitation.created_at, expires_at=invitation.expires_at,
        accepted_at=invitation.accepted_at, revoked_at=invitation.revoked_at,
    )


def _target(db: Session, org_id: str, workspace_id: str | None, project_id: str | None) -> Resource:
    """The node a body names inside ``org_id`` (404 if it is not in that org)."""
    if project_id is not None:
        project = tenancy.get_project(db, project_id)
        if project.org_id != org_id or workspace_id not in (None, project.workspace_id):
            raise InvalidRequest("the project is not in this organization", field="project_id")
        return tenancy.resource_of(project)
    if workspace_id is not None:
        workspace = tenancy.get_workspace(db, workspace_id)
        if workspace.org_id != org_id:
            raise InvalidRequest("the workspace is not in this organization",
                                 field="workspace_id")
        return tenancy.resource_of(workspace)
    return Resource(org_id)


# --- organizations ------------------------------------------------------------------


@router.get("/v1/orgs", response_model=list[OrgOut],
            summary="Organizations in which the caller may read (org:read)")
def list_orgs(caller: UserCaller) -> list[OrgOut]:
    principal = caller.user
    ids = {g.org_id for g in principal.grants.values()
           if may(principal, P.ORG_READ, Resource(g.org_id))}
    with caller.cp.transaction() as db:
        return [OrgOut.model_validate(o) for o in tenancy.list_orgs(db, ids)]


@router.post("/v1/orgs", response_model=OrgOut, status_code=201,
             summary="Create an organization; the caller becomes its owner")
def create_org(body: NameRequest, caller: UserCaller) -> OrgOut:
    with caller.cp.transaction() as db:
        user = db.get(User, caller.user.user_id)
        assert user is not None
        # An unverified account owns nothing (a pre-hijacker must not build a tenant).
        require_verified(user, "create an organization")
        org = tenancy.create_org(caller.cp, db, name=body.name,
                                 owner_user_id=caller.user.user_id)
        return OrgOut.model_validate(org)


@router.get("/v1/orgs/{org_id}", response_model=OrgOut)
def get_org(org_id: str, scope: Annotated[Scope, Depends(On(P.ORG_READ, "org"))]) -> OrgOut:
    with scope.cp.transaction() as db:
        return OrgOut.model_validate(tenancy.get_org(db, org_id))


@router.patch("/v1/orgs/{org_id}", response_model=OrgOut, summary="Rename")
def rename_org(
    org_id: str, body: NameRequest, scope: Annotated[Scope, Depends(On(P.ORG_MANAGE, "org"))]
) -> OrgOut:
    with scope.cp.transaction() as db:
        org = tenancy.get_org(db, org_id)
        tenancy.rename(db, org, body.name)
        return OrgOut.model_validate(org)


# --- workspaces and projects --------------------------------------------------------


@router.get("/v1/orgs/{org_id}/workspaces", response_model=list[WorkspaceOut],
            summary="Workspaces of the organization the caller may read")
def list_workspaces(
    org_id: str, scope: Annotated[Scope, Depends(On(P.ORG_READ, "org"))]
) -> list[WorkspaceOut]:
    with scope.cp.transaction() as db:
        return [WorkspaceOut.model_validate(w) for w in tenancy.list_workspaces(db, org_id)
                if may(scope.principal, P.WORKSPACE_READ, tenancy.resource_of(w))]


@router.post("/v1/orgs/{org_id}/workspaces", response_model=WorkspaceOut, status_code=201)
def create_workspace(
    org_id: str, body: NameRequest,
    scope: Annotated[Scope, Depends(On(P.WORKSPACE_MANAGE, "org"))],
) -> WorkspaceOut:
    with scope.cp.transaction() as db:
        workspace = tenancy.create_workspace(scope.cp, db, tenancy.get_org(db, org_id), body.name)
        return WorkspaceOut.model_validate(workspace)


@router.get("/v1/workspaces/{workspace_id}", response_model=WorkspaceOut)
def get_workspace(
    workspace_id: str, scope: Annotated[Scope, Depends(On(P.WORKSPACE_READ, "workspace"))]
) -> WorkspaceOut:
    with scope.cp.transaction() as db:
        return WorkspaceOut.model_validate(tenancy.get_workspace(db, workspace_id))


@router.patch("/v1/workspaces/{workspace_id}", response_model=WorkspaceOut, summary="Rename")
def rename_workspace(
    workspace_id: str, body: NameRequest,
    scope: Annotated[Scope, Depends(On(P.WORKSPACE_MANAGE, "workspace"))],
) -> WorkspaceOut:
    with scope.cp.transaction() as db:
        workspace = tenancy.get_workspace(db, workspace_id)
        tenancy.rename(db, workspace, body.name)
        return WorkspaceOut.model_validate(workspace)


@router.get("/v1/workspaces/{workspace_id}/projects", response_model=list[ProjectOut],
            summary="Projects of the workspace the caller may read")
def list_projects(
    workspace_id: str, scope: Annotated[Scope, Depends(On(P.WORKSPACE_READ, "workspace"))]
) -> list[ProjectOut]:
    with scope.cp.transaction() as db:
        return [ProjectOut.model_validate(p) for p in tenancy.list_projects(db, workspace_id)
                if may(scope.principal, P.PROJECT_READ, tenancy.resource_of(p))]


@router.post("/v1/workspaces/{workspace_id}/projects", response_model=ProjectOut,
             status_code=201)
def create_project(
    workspace_id: str, body: NameRequest,
    scope: Annotated[Scope, Depends(On(P.PROJECT_MANAGE, "workspace"))],
) -> ProjectOut:
    with scope.cp.transaction() as db:
        project = tenancy.create_project(scope.cp, db, tenancy.get_workspace(db, workspace_id),
                                         body.name)
        return ProjectOut.model_validate(project)


@router.get("/v1/projects/{project_id}", response_model=ProjectOut)
def get_project(
    project_id: str, scope: Annotated[Scope, Depends(On(P.PROJECT_READ, "project"))]
) -> ProjectOut:
    with scope.cp.transaction() as db:
        return ProjectOut.model_validate(tenancy.get_project(db, project_id))


@router.patch("/v1/projects/{project_id}", response_model=ProjectOut, summary="Rename")
def rename_project(
    project_id: str, body: NameRequest,
    scope: Annotated[Scope, Depends(On(P.PROJECT_MANAGE, "project"))],
) -> ProjectOut:
    with scope.cp.transaction() as db:
        project = tenancy.get_project(db, project_id)
        tenancy.rename(db, project, body.name)
        return ProjectOut.model_validate(project)


# --- memberships --------------------------------------------------------------------


@router.get("/v1/orgs/{org_id}/memberships", response_model=list[MembershipOut],
            tags=["members"])
def list_memberships(
    org_id: str, scope: Annotated[Scope, Depends(On(P.MEMBERS_READ, "org"))]
) -> list[MembershipOut]:
    with scope.cp.transaction() as db:
        rows = memberships.list_memberships(db, org_id)
        emails = {uid: email for uid, email in db.execute(select(User.id, User.email).where(
            User.id.in_({m.user_id for m, _ in rows})))}
        return [_membership_out(m, r).model_copy(update={"email": emails.get(m.user_id)})
                for m, r in rows]


@router.post("/v1/orgs/{org_id}/memberships", response_model=MembershipOut, status_code=201,
             tags=["members"], summary="Give a member of the org a role on a node of it")
def add_membership(
    org_id: str, body: MembershipCreate,
    checker: Annotated[Checker, Depends(Deferred(P.MEMBERS_MANAGE))],
) -> MembershipOut:
    with checker.cp.transaction() as db:
        tenancy.get_org(db, org_id)
        scope = checker.check(_target(db, org_id, body.workspace_id, body.project_id))
        membership = memberships.add_membership(
            checker.cp, db, scope.access, scope.resource, user_id=body.user_id,
            role_name=body.role,
        )
        role = db.get(Role, membership.role_id)
        assert role is not None
        return _membership_out(membership, role)


@router.patch("/v1/orgs/{org_id}/memberships/{membership_id}", response_model=MembershipOut,
              tags=["members"], summary="Change a member's role")
def change_membership(
    org_id: str, membership_id: str, body: RoleChange,
    checker: Annotated[Checker, Depends(Deferred(P.MEMBERS_MANAGE))],
) -> MembershipOut:
    with checker.cp.transaction() as db:
        membership = memberships.get_membership(db, org_id, membership_id)
        scope = checker.check(memberships.resource_of_membership(membership))
        memberships.change_role(db, scope.access, membership, body.role)
        role = db.get(Role, membership.role_id)
        assert role is not None
        return _membership_out(membership, role)


@router.delete("/v1/orgs/{org_id}/memberships/{membership_id}", status_code=204,
               tags=["members"], summary="Remove a role (the org role: leave the org)")
def remove_membership(
    org_id: str, membership_id: str,
    checker: Annotated[Checker, Depends(Deferred(P.MEMBERS_MANAGE))],
) -> None:
    with checker.cp.transaction() as db:
        membership = memberships.get_membership(db, org_id, membership_id)
        scope = checker.check(memberships.resource_of_membership(membership))
        memberships.remove_membership(db, scope.access, membership)


# --- invitations --------------------------------------------------------------------


@router.get("/v1/orgs/{org_id}/invitations", response_model=list[InvitationOut],
            tags=["members"])
def list_invitations(
    org_id: str, scope: Annotated[Scope, Depends(On(P.MEMBERS_READ, "org"))]
) -> list[InvitationOut]:
    with scope.cp.transaction() as db:
        return [_invitation_out(i, r) for i, r in invitations.list_invitations(db, org_id)]


@router.post("/v1/orgs/{org_id}/invitations", response_model=InvitationIssuedOut,
             status_code=201, tags=["members"],
             summary="Invite someone by email; the token is shown once")
def invite(
    org_id: str, body: InvitationCreate,
    checker: Annotated[Checker, Depends(Deferred(P.MEMBERS_MANAGE))],
) -> InvitationIssuedOut:
    with checker.cp.transaction() as db:
        tenancy.get_org(db, org_id)
        scope = checker.check(_target(db, org_id, body.workspace_id, body.project_id))
        issued = invitations.create_invitation(
            checker.cp, db, scope.access, scope.resource, email=body.email,
            role_name=body.role, invited_by=scope.user_id,
        )
        # Its mail is queued in this transaction (sent by the outbox once committed).
        result = InvitationIssuedOut(invitation=_invitation_out(issued.invitation, issued.role),
                                     token=issued.token)
    return result


@router.delete("/v1/orgs/{org_id}/invitations/{invitation_id}", status_code=204,
               tags=["members"], summary="Withdraw an invitation")
def revoke_invitation(
    org_id: str, invitation_id: str,
    checker: Annotated[Checker, Depends(Deferred(P.MEMBERS_MANAGE))],
) -> None:
    with checker.cp.transaction() as db:
        invitation = invitations.get_invitation(db, org_id, invitation_id)
        checker.check(Resource(invitation.org_id, invitation.workspace_id,
                               invitation.project_id))
        invitations.revoke_invitation(checker.cp, invitation)


@router.post("/v1/invitations/accept", response_model=MembershipOut, tags=["members"],
             summary="Accept an invitation sent to the caller's email")
def accept_invitation(body: AcceptInvitation, caller: UserCaller) -> MembershipOut:
    with caller.cp.transaction() as db:
        user = db.get(User, caller.user.user_id)
        assert user is not None
        membership = invitations.accept_invitation(caller.cp, db, user, body.token)
        role = db.get(Role, membership.role_id)
        assert role is not None
        return _membership_out(membership, role)


# --- roles --------------------------------------------------------------------------


@router.get("/v1/orgs/{org_id}/roles", response_model=list[RoleOut], tags=["members"],
            summary="Built-in and custom roles of the organization")
def list_roles(
    org_id: str, scope: Annotated[Scope, Depends(On(P.ORG_READ, "org"))]
) -> list[RoleOut]:
    with scope.cp.transaction() as db:
        return [_role_out(r) for r in roles.list_roles(db, org_id)]


@router.post("/v1/orgs/{org_id}/roles", response_model=RoleOut, status_code=201,
             tags=["members"], summary="Create a custom role (a named set of permissions)")
def create_role(
    org_id: str, body: RoleCreate, scope: Annotated[Scope, Depends(On(P.ORG_MANAGE, "org"))]
) -> RoleOut:
    with scope.cp.transaction() as db:
        role = roles.create_custom_role(scope.cp, db, scope.access, org_id=org_id,
                                        name=body.name, permissions=body.permissions)
        return _role_out(role)


@router.patch("/v1/orgs/{org_id}/roles/{role_id}", response_model=RoleOut, tags=["members"])
def update_role(
    org_id: str, role_id: str, body: RoleUpdate,
    scope: Annotated[Scope, Depends(On(P.ORG_MANAGE, "org"))],
) -> RoleOut:
    with scope.cp.transaction() as db:
        role = roles.get_custom_role(db, org_id, role_id)
        roles.update_custom_role(db, scope.access, role, body.permissions)
        return _role_out(role)


@router.delete("/v1/orgs/{org_id}/roles/{role_id}", status_code=204, tags=["members"])
def delete_role(
    org_id: str, role_id: str, scope: Annotated[Scope, Depends(On(P.ORG_MANAGE, "org"))]
) -> None:
    with scope.cp.transaction() as db:
        roles.delete_custom_role(db, scope.access, roles.get_custom_role(db, org_id, role_id))
