"""The bootstrap tenant of an embedded installation: one org, workspace, project and key.

Created on the first ``apiary up`` of a data directory and reused afterwards, so events
written before a restart stay in the same project. Only the key's hash is kept in
``bootstrap.json``; the key itself is written to ``connection.json`` (mode 0600), which is
the one place the issue of a key to its owner is recorded. A data directory whose
``connection.json`` was deleted gets a new key (the old one stops working).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from apiary.auth import ApiKeyAuthenticator, Permission, Principal, StoredKey, mint_api_key
from apiary.event import Tenant


@dataclass(frozen=True)
class Bootstrap:
    tenant: Tenant
    key: StoredKey
    api_key: str

    def authenticator(self) -> ApiKeyAuthenticator:
        return ApiKeyAuthenticator([self.key])


def _write_private(path: Path, doc: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def load_or_create(data_dir: Path) -> Bootstrap:
    state_path = data_dir / "bootstrap.json"
    connection_path = data_dir / "connection.json"
    if state_path.exists():
        state = json.loads(state_path.read_text())
    else:
        state = {
            "org_id": str(uuid.uuid4()),
            "workspace_id": str(uuid.uuid4()),
            "project_id": str(uuid.uuid4()),
        }
    api_key: str | None = None
    if connection_path.exists() and "key_id" in state:
        api_key = json.loads(connection_path.read_text()).get("api_key")
        if not isinstance(api_key, str) or state["key_id"] not in api_key:
            api_key = None
    if api_key is None:
        minted = mint_api_key()
        state.update(key_id=minted.key_id, secret_hash=minted.secret_hash)
        api_key = minted.value
    _write_private(state_path, state)
    tenant: Tenant = {
        "org_id": state["org_id"],
        "workspace_id": state["workspace_id"],
        "project_id": state["project_id"],
    }
    principal = Principal(
        subject=f"key:{state['key_id']}",
        org_id=tenant["org_id"],
        workspace_id=tenant["workspace_id"],
        project_id=tenant["project_id"],
        permissions=frozenset({Permission.EVENTS_WRITE, Permission.EVENTS_READ}),
    )
    return Bootstrap(tenant, StoredKey(state["key_id"], state["secret_hash"], principal), api_key)


def write_connection(data_dir: Path, *, url: str, api_key: str, project_id: str) -> Path:
    path = data_dir / "connection.json"
    _write_private(path, {"url": url, "api_key": api_key, "project_id": project_id})
    return path
