"""API key endpoints: project keys and workspace keys (``keys:manage``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from apiary.control import apikeys
from apiary.control.api._guards import On, Scope
from apiary.control.api.schemas import KeyCreate, KeyIssuedOut, KeyOut
from apiary.control.permissions import Permission as P

router = APIRouter(tags=["keys"])

ProjectKeys = Annotated[Scope, Depends(On(P.KEYS_MANAGE, "project"))]
WorkspaceKeys = Annotated[Scope, Depends(On(P.KEYS_MANAGE, "workspace"))]


def _list(scope: Scope) -> list[KeyOut]:
    with scope.cp.transaction() as db:
        return [KeyOut.model_validate(k) for k in apikeys.list_keys(db, scope.resource)]


def _create(scope: Scope, body: KeyCreate) -> KeyIssuedOut:
    with scope.cp.transaction() as db:
        issued = apikeys.create_key(scope.cp, db, scope.access, scope.resource, name=body.name,
                                    permissions=body.permissions, created_by=scope.actor)
        return KeyIssuedOut(key=KeyOut.model_validate(issued.key), api_key=issued.value)


def _revoke(scope: Scope, key_id: str) -> KeyOut:
    with scope.cp.transaction() as db:
        key = apikeys.revoke_key(scope.cp, apikeys.get_key(db, scope.resource, key_id))
        return KeyOut.model_validate(key)


@router.get("/v1/projects/{project_id}/keys", response_model=list[KeyOut])
def list_project_keys(project_id: str, scope: ProjectKeys) -> list[KeyOut]:
    return _list(scope)


@router.post("/v1/projects/{project_id}/keys", response_model=KeyIssuedOut, status_code=201,
             summary="Mint a project (ingestion) key; the key is shown once")
def create_project_key(project_id: str, body: KeyCreate, scope: ProjectKeys) -> KeyIssuedOut:
    return _create(scope, body)


@router.delete("/v1/projects/{project_id}/keys/{key_id}", response_model=KeyOut,
               summary="Revoke a project key")
def revoke_project_key(project_id: str, key_id: str, scope: ProjectKeys) -> KeyOut:
    return _revoke(scope, key_id)


@router.get("/v1/workspaces/{workspace_id}/keys", response_model=list[KeyOut])
def list_workspace_keys(workspace_id: str, scope: WorkspaceKeys) -> list[KeyOut]:
    return _list(scope)


@router.post("/v1/workspaces/{workspace_id}/keys", response_model=KeyIssuedOut,
             status_code=201, summary="Mint a workspace key; the key is shown once")
def create_workspace_key(workspace_id: str, body: KeyCreate, scope: WorkspaceKeys) -> KeyIssuedOut:
    return _create(scope, body)


@router.delete("/v1/workspaces/{workspace_id}/keys/{key_id}", response_model=KeyOut,
               summary="Revoke a workspace key")
def revoke_workspace_key(workspace_id: str, key_id: str, scope: WorkspaceKeys) -> KeyOut:
    return _revoke(scope, key_id)
