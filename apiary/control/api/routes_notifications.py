"""An org's notification channels: ``/v1/orgs/{org_id}/notification-channels`` (create,
list, read, update, delete; ``notifications:manage``, which org owners and admins hold,
except the list and reads, which every member of the org may make with ``org:read``) and
``.../{channel_id}/test`` (202: a data plane serving a project in the channel's scope
publishes the test message when it applies the config-log entry;
:mod:`apiary.control.config.notifications`). No response holds a channel's secret."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from apiary.control.api._guards import On, Scope
from apiary.control.api.schemas_notifications import (
    ChannelCreate,
    ChannelCreated,
    ChannelOut,
    ChannelTestOut,
    ChannelUpdate,
)
from apiary.control.config import notifications
from apiary.control.db import NotificationChannel, Organization
from apiary.control.permissions import Permission as P
from apiary.control.service import ControlPlane
from apiary.control.tenancy import get_org

log = logging.getLogger("apiary.control.notifications")
router = APIRouter()

Read = Annotated[Scope, Depends(On(P.ORG_READ, "org"))]
Manage = Annotated[Scope, Depends(On(P.NOTIFICATIONS_MANAGE, "org"))]

_CHANNELS = "/v1/orgs/{org_id}/notification-channels"


def _org(scope: Scope, db: Session) -> Organization:
    return get_org(db, scope.resource.org_id)


def _scope_out(channel: NotificationChannel) -> dict[str, object]:
    if channel.scope_type == "org":
        return {"org": True}
    return {f"{channel.scope_type}_id": channel.scope_id}


def _out(cp: ControlPlane, channel: NotificationChannel) -> ChannelOut:
    return ChannelOut(
        id=channel.id, org_id=channel.org_id, name=channel.name, type=channel.type,
        scope=_scope_out(channel), severities=list(channel.severities),
        enabled=channel.enabled, config=notifications.public_config(cp, channel),
        created_by=channel.created_by, created_at=channel.created_at,
        updated_at=channel.updated_at)


@router.get(_CHANNELS, response_model=list[ChannelOut], tags=["notifications"])
def list_channels(org_id: str, scope: Read) -> list[ChannelOut]:
    with scope.cp.transaction() as db:
        return [_out(scope.cp, c) for c in notifications.list_channels(db, _org(scope, db))]


@router.post(_CHANNELS, response_model=ChannelCreated, status_code=201,
             tags=["notifications"],
             summary="Create a channel (a generated webhook signing secret is shown once)")
def create_channel(org_id: str, body: ChannelCreate, scope: Manage) -> ChannelCreated:
    scope_type, scope_id = body.scope.parts(org_id)
    with scope.cp.transaction() as db:
        created = notifications.create_channel(
            scope.cp, db, _org(scope, db), notifications.ChannelSpec(
                name=body.name, type=body.type, config=body.config, scope_type=scope_type,
                scope_id=scope_id, severities=list(body.severities), enabled=body.enabled),
            scope.actor)
        out = _out(scope.cp, created.channel)
    log.info("notification channel created", extra={
        "org_id": org_id, "channel_id": out.id, "type": out.type, "actor": scope.actor})
    return ChannelCreated(**out.model_dump(), signing_secret=created.generated_secret)


@router.get(_CHANNELS + "/{channel_id}", response_model=ChannelOut, tags=["notifications"])
def get_channel(org_id: str, channel_id: str, scope: Read) -> ChannelOut:
    with scope.cp.transaction() as db:
        return _out(scope.cp, notifications.get_channel(db, _org(scope, db), channel_id))


@router.patch(_CHANNELS + "/{channel_id}", response_model=ChannelOut, tags=["notifications"])
def update_channel(org_id: str, channel_id: str, body: ChannelUpdate,
                   scope: Manage) -> ChannelOut:
    changes = body.model_dump(exclude_unset=True, exclude={"scope"})
    changes = {k: v for k, v in changes.items() if v is not None}
    if body.scope is not None:
        changes["scope_type"], changes["scope_id"] = body.scope.parts(org_id)
    with scope.cp.transaction() as db:
        channel = notifications.get_channel(db, _org(scope, db), channel_id)
        notifications.update_channel(scope.cp, db, channel, changes)
        out = _out(scope.cp, channel)
    log.info("notification channel updated", extra={
        "org_id": org_id, "channel_id": channel_id, "fields": sorted(changes),
        "actor": scope.actor})
    return out


@router.delete(_CHANNELS + "/{channel_id}", status_code=204, tags=["notifications"])
def delete_channel(org_id: str, channel_id: str, scope: Manage) -> None:
    with scope.cp.transaction() as db:
        notifications.delete_channel(
            scope.cp, db, notifications.get_channel(db, _org(scope, db), channel_id))
    log.info("notification channel deleted",
             extra={"org_id": org_id, "channel_id": channel_id, "actor": scope.actor})


@router.post(_CHANNELS + "/{channel_id}/test", response_model=ChannelTestOut,
             status_code=202, tags=["notifications"],
             summary="Send a test message (through a data plane serving the scope)")
def test_channel(org_id: str, channel_id: str, scope: Manage) -> ChannelTestOut:
    with scope.cp.transaction() as db:
        channel = notifications.get_channel(db, _org(scope, db), channel_id)
        request = notifications.request_test(scope.cp, db, channel, scope.actor)
    log.info("notification channel test requested", extra={
        "org_id": org_id, "channel_id": channel_id, "test_id": request.test_id,
        "data_plane_id": request.data_plane_id, "actor": scope.actor})
    return ChannelTestOut(test_id=request.test_id, channel_id=channel_id,
                          data_plane_id=request.data_plane_id, project_id=request.project_id)
