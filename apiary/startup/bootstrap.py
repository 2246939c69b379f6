"""The bootstrap tenant of an embedded installation, created through the control plane.

On the first ``apiary up`` of a data directory the control plane gets an admin user, an
organization, a workspace, a project, a project API key, and the local data plane as a
token audience. Later starts reuse all of it (the project id stays, so events written
before a restart stay visible), and reuse the key recorded in ``connection.json`` while the
control plane still knows it as active; otherwise a new key is minted.

``connection.json`` (mode 0600) holds the URL, the key, the project id, the admin's email
and the OTLP/gRPC endpoint (``otlp_grpc_endpoint``, ``host:port``, when it is on); the
control plane keeps only the key's hash. The admin's password is generated when the
account is created, returned in :attr:`Bootstrap.admin_password` of that one start so
that ``apiary up`` can show it once, and written nowhere: a forgotten one is replaced with
``apiary users reset-password admin@apiary.local``. An ``admin_password`` left in
``connection.json`` by an earlier version is dropped the next time it is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apiary._private.files import write_private
from apiary.settings import ApiarySettings

ADMIN_EMAIL = "admin@apiary.local"


@dataclass(frozen=True)
class Bootstrap:
    """The bootstrap tenant. ``admin_password`` is set only when this start created the
    admin account (shown once, stored nowhere)."""

    project_id: str
    api_key: str
    admin_email: str
    admin_password: str | None


def read_connection(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "connection.json"
    if not path.exists():
        return {}
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except ValueError:
        return {}
    return doc


def _key_id(api_key: str) -> str | None:
    parts = api_key.split("_")
    return parts[2] if len(parts) >= 4 and api_key.startswith("hh_ingst_") else None


def bootstrap_control_plane(settings: ApiarySettings, *, local_data_plane: bool = True
                            ) -> Bootstrap:
    """Create or reuse the bootstrap tenant and key in the (embedded) control plane.

    Without ``local_data_plane`` (a control-plane-only node) no data plane is registered as
    a token audience and no key is minted (``api_key`` is empty): the admin account, its
    organization, workspace and project are created, and keys are made for the projects of
    the data planes that will serve them."""
    from apiary.control import admin
    from apiary.control.permissions import KEY_GRANTABLE

    previous = read_connection(settings.data_dir)
    first = admin.bootstrap(settings, admin_email=ADMIN_EMAIL, mint_key=False,
                            local_data_plane=local_data_plane)
    project_id: str = first["project"]["id"]
    if not local_data_plane:
        return Bootstrap(project_id, "", ADMIN_EMAIL, first.get("admin_password"))
    api_key = previous.get("api_key")
    key_id = _key_id(api_key) if isinstance(api_key, str) else None
    active = {
        k["id"] for k in admin.keys_list(settings, project_id=project_id)["keys"]
        if k["revoked_at"] is None
    }
    if key_id is None or key_id not in active or previous.get("project_id") != project_id:
        # Everything a project key may do (ingest, read, datasets, runs, prompts, metrics):
        # this is the key of the installation's first user, for the SDK and the CLI alike.
        minted = admin.keys_create(
            settings, project_id=project_id, name="bootstrap",
            permissions=sorted(p.value for p in KEY_GRANTABLE),
        )
        api_key = minted["api_key"]
    # Only a password this call generated: one an older version kept in connection.json
    # is not carried forward (the file is rewritten without it).
    password = first.get("admin_password")
    return Bootstrap(project_id, str(api_key), ADMIN_EMAIL, password)


def prepare_own_data_plane(settings: ApiarySettings) -> str:
    """The bootstrap token with which this node's data plane registers at this node's own
    control plane (``--plane both`` with the federation endpoint on, no identity yet).

    Through the control plane's own code, in-process (the node holds cpdb): the data plane
    ``settings.data_plane_id`` (the legacy audience an earlier version registered, if any:
    same id, so its tokens stay valid) becomes a ``pending`` federated data plane named
    "local" at the node's URL, marked as serving new projects, with every unassigned
    project (the bootstrap project included) assigned to it
    (:func:`~apiary.control.federation.prepare_local_data_plane`). Committed when this
    returns; the registration itself is the one a remote data plane makes
    (:func:`~apiary.dataplane.federation.ensure_identity`)."""
    from apiary.control import admin
    from apiary.control.federation import prepare_local_data_plane

    with admin.control_plane(settings) as cp, cp.transaction() as db:
        _plane, token = prepare_local_data_plane(
            db, dp_id=settings.data_plane_id, name="local", url=settings.base_url,
            now=cp.now())
        return token


def move_own_data_plane(settings: ApiarySettings, dp_id: str) -> None:
    """Record this node's URL as its data plane's (the URL the web UI and a 421 name),
    when a start on another host or port changed it. Committed when this returns."""
    from apiary.control import admin
    from apiary.control.db import DataPlane

    with admin.control_plane(settings) as cp, cp.transaction() as db:
        plane = db.get(DataPlane, dp_id)
        if plane is not None and plane.url != settings.base_url:
            plane.url = settings.base_url


def write_connection(settings: ApiarySettings, bootstrap: Bootstrap) -> Path:
    """Write ``connection.json`` (mode 0600): URL, API key, project id, control plane URL,
    admin email and, when it is on, the OTLP/gRPC endpoint (``host:port``). Never the admin
    password."""
    path = settings.data_dir / "connection.json"
    doc: dict[str, object] = {
        "url": settings.base_url,
        "api_key": bootstrap.api_key,
        "project_id": bootstrap.project_id,
        "control_plane_url": settings.control_plane_url,
        "admin_email": bootstrap.admin_email,
    }
    if settings.otlp_grpc_endpoint is not None:
        doc["otlp_grpc_endpoint"] = settings.otlp_grpc_endpoint
    write_private(path, json.dumps(doc, indent=2) + "\n")
    return path


def write_control_connection(settings: ApiarySettings, bootstrap: Bootstrap,
                             federation_endpoint: str | None) -> Path:
    """``connection.json`` (mode 0600) of a control-plane-only node: its URL, the control
    plane's URL, the admin's email, the bootstrap project's id and the federation endpoint
    data planes dial (``host:port``, absent when it is off). No API key: keys are made for
    the projects of the data planes that serve them. Never the admin password."""
    path = settings.data_dir / "connection.json"
    doc: dict[str, object] = {
        "plane": "control",
        "url": settings.base_url,
        "control_plane_url": settings.control_plane_url,
        "admin_email": bootstrap.admin_email,
        "project_id": bootstrap.project_id,
    }
    if federation_endpoint is not None:
        doc["federation_endpoint"] = federation_endpoint
    write_private(path, json.dumps(doc, indent=2) + "\n")
    return path


def write_data_connection(settings: ApiarySettings, data_plane_id: str | None) -> Path:
    """``connection.json`` (mode 0600) of a node whose data plane trusts an external control
    plane: its URL, the control plane's URL, the OTLP/gRPC endpoint (when on) and, when it is
    federated, its data plane id. No API key: keys are made at the control plane."""
    path = settings.data_dir / "connection.json"
    doc: dict[str, object] = {
        "plane": settings.plane,
        "url": settings.base_url,
        "control_plane_url": settings.control_plane_url,
    }
    if settings.otlp_grpc_endpoint is not None:
        doc["otlp_grpc_endpoint"] = settings.otlp_grpc_endpoint
    if data_plane_id is not None:
        doc["data_plane_id"] = data_plane_id
    write_private(path, json.dumps(doc, indent=2) + "\n")
    return path
