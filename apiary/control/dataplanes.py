"""Registered data planes: the only valid audiences of the tokens the control plane signs.

A data plane's id is the ``aud`` claim of its tokens and its ``APIARY_DATA_PLANE_ID``. A
data plane dedicated to one organization (``org_id`` set) only gets that org's tokens.

At most one data plane *serves new projects* (``serves_new_projects``, set by
:func:`set_serves_new_projects`): a project created while one is marked is assigned to it
in the creating transaction (:func:`new_project_data_plane`), so the config-log entries of
everything made in the project are stamped for that data plane from the start.
"""

from __future__ import annotations

import re

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from apiary.control.db import DataPlane
from apiary.control.service import ControlPlane
from apiary.errors import Conflict, InvalidRequest

# Same shape the data plane accepts for APIARY_DATA_PLANE_ID.
_DP_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,200}$")


def register_data_plane(
    cp: ControlPlane, db: Session, *, dp_id: str, name: str, url: str, org_id: str | None = None
) -> DataPlane:
    if not _DP_ID.match(dp_id):
        raise InvalidRequest("a data plane id is 1-200 of A-Z a-z 0-9 . _ : / -", field="id")
    if dp_id.rstrip("/") == cp.issuer:
        # The issuer is the audience of control-plane tokens: a data plane with that id
        # would receive tokens the control plane accepts.
        raise InvalidRequest("a data plane id must not be the control plane's issuer URL",
                             field="id")
    if not url.startswith(("http://", "https://")):
        raise InvalidRequest("a data plane URL is http:// or https://", field="url")
    if db.get(DataPlane, dp_id) is not None:
        raise Conflict("a data plane with this id is registered", field="id")
    plane = DataPlane(id=dp_id, name=name, url=url.rstrip("/"), org_id=org_id,
                      created_at=cp.now())
    db.add(plane)
    db.flush()
    return plane


def audience_for(db: Session, audience: str, org_id: str) -> DataPlane:
    """The data plane ``audience`` names, if it may receive tokens of ``org_id``."""
    plane = db.get(DataPlane, audience)
    if plane is None or (plane.org_id is not None and plane.org_id != org_id):
        raise InvalidRequest("audience is not a data plane registered for this organization",
                             field="audience")
    return plane


def set_serves_new_projects(db: Session, plane: DataPlane, enabled: bool) -> None:
    """Mark ``plane`` as the data plane of new projects (unmarking any other: at most one is
    marked), or unmark it. Only an active federated data plane may be marked (409
    :class:`~apiary.errors.Conflict` for a legacy, pending or revoked one); unmarking always
    succeeds. In the caller's transaction: durable when it commits."""
    if enabled:
        if not plane.federated or plane.status != "active":
            state = "a legacy audience" if not plane.federated else plane.status
            raise Conflict(f"data plane {plane.id} is {state}: only an active federated data "
                           "plane can serve new projects", data_plane_id=plane.id)
        for other in db.scalars(select(DataPlane).where(
                DataPlane.serves_new_projects.is_(True), DataPlane.id != plane.id)):
            other.serves_new_projects = False
    plane.serves_new_projects = enabled
    db.flush()


def new_project_data_plane(db: Session, org_id: str) -> str | None:
    """The id of the data plane a new project of ``org_id`` is assigned to: the marked one
    (:func:`set_serves_new_projects`) when it is federated, not revoked, and shared or
    dedicated to ``org_id``; else None (the project starts unassigned)."""
    plane = db.scalars(select(DataPlane).where(DataPlane.serves_new_projects.is_(True))
                       .order_by(DataPlane.id)).first()
    if plane is None or not plane.federated or plane.status == "revoked":
        return None
    if plane.org_id is not None and plane.org_id != org_id:
        return None
    return plane.id


def list_data_planes(db: Session, org_ids: set[str] | None) -> list[DataPlane]:
    """Shared data planes plus those dedicated to ``org_ids`` (None: all of them)."""
    statement = select(DataPlane).order_by(DataPlane.id)
    if org_ids is not None:
        statement = statement.where(or_(DataPlane.org_id.is_(None),
                                        DataPlane.org_id.in_(org_ids)))
    return list(db.scalars(statement))
