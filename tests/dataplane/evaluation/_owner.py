"""A served control plane and an owner of two projects on it, for the evaluation suites
that call a data plane trusting it (test_online.py, test_draft.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from _accounts import verify_email
from _servers import http_server

from apiary.control import ControlPlane, admin
from apiary.control.api import create_control_plane_app
from apiary.settings import ApiarySettings

PASSWORD = "a long enough password 42"


@contextmanager
def served_control_plane(data_dir: Path, *, issuer: str, dp_id: str,
                         name: str) -> Iterator[tuple[str, ApiarySettings]]:
    """A control plane over HTTP with data plane ``dp_id`` registered: (URL, settings)."""
    settings = ApiarySettings(data_dir=data_dir, cp_issuer=issuer, data_plane_id=dp_id)
    admin.data_planes_register(settings, dp_id=dp_id, name=name, url="http://dp.test")
    cp = ControlPlane.open(settings)
    try:
        with http_server(create_control_plane_app(cp)) as url:
            yield url, settings
    finally:
        cp.close()


@dataclass
class Owner:
    """A verified user owning an organization with projects ``a`` and ``b``."""

    cp: httpx.AsyncClient
    headers: dict[str, str]
    projects: dict[str, str]

    async def key(self, project: str, permissions: list[str]) -> str:
        """A new API key of ``project`` with ``permissions``."""
        issued = await self.cp.post(f"/v1/projects/{self.projects[project]}/keys",
                                    headers=self.headers,
                                    json={"name": f"k-{uuid.uuid4().hex[:4]}",
                                          "permissions": permissions})
        assert issued.status_code == 201, issued.text
        return str(issued.json()["api_key"])


async def owner_of_two_projects(cp: httpx.AsyncClient, cp_url: str,
                                cp_settings: ApiarySettings, org_name: str) -> Owner:
    """Sign up, verify (as the operator's link would: an unverified account owns
    nothing), then create an organization, a workspace and projects ``a`` and ``b``."""
    email = f"owner-{uuid.uuid4().hex[:6]}@example.com"
    signup = await cp.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    headers = {"authorization": f"Bearer {signup.json()['session_token']}"}
    await asyncio.to_thread(verify_email, cp_settings, cp_url, email)
    org = (await cp.post("/v1/orgs", headers=headers, json={"name": org_name})).json()
    ws = (await cp.post(f"/v1/orgs/{org['id']}/workspaces", headers=headers,
                        json={"name": "w"})).json()
    projects = {name: (await cp.post(f"/v1/workspaces/{ws['id']}/projects",
                                     headers=headers, json={"name": name})).json()["id"]
                for name in ("a", "b")}
    return Owner(cp, headers, projects)
