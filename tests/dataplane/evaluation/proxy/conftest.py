"""Fixtures of the LLM proxy tests: a fake provider served by uvicorn, and a data plane
(``tests/_dataplane.py``) with keys in two workspaces of one organization and one of
another organization.

Keys: ``a`` (project A of ws-1: proxy:use, events:read), ``admin`` (project A: proxy:manage,
held on the workspace too, as a workspace admin's token has it), ``project_admin`` (project
A: proxy:manage and proxy:use on the project only), ``user_only`` (project A: events:read, no
proxy), ``b`` (project B of ws-2: everything, proxy:manage on ws-2), ``other`` (org-2, whose
workspace is also called ws-1: everything, proxy:manage on it), ``ws`` (ws-1 without a
project: proxy:use and proxy:manage).

The fake provider listens on 127.0.0.1 over http, so the plane allow-lists 127.0.0.1 and
``localhost`` (``APIARY_OUTBOUND_ALLOWLIST``); without it every credential pointing there is
refused.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from _dataplane import KeySpec, open_plane
from _fake_llm_provider import FakeProvider
from _proxy_plane import ProxyPlane, Upstream
from _servers import http_server

from apiary.dataplane.auth import Permission
from apiary.dataplane.evaluation.proxy.routes import proxy_of
from apiary.queue import NatsServer
from apiary.store import EventStore

USE, MANAGE = Permission.PROXY_USE, Permission.PROXY_MANAGE
READ = Permission.EVENTS_READ


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    fake = FakeProvider()
    with http_server(fake.app()) as url:
        yield Upstream(fake, url)


@pytest.fixture(scope="module")
async def proxy_plane(nats_server: NatsServer, store: EventStore,
                      tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ProxyPlane]:
    suffix = uuid.uuid4().hex[:10]
    projects = {"a": f"proj-pa-{suffix}", "b": f"proj-pb-{suffix}",
                "other": f"proj-po-{suffix}"}
    keys = {
        "a": KeySpec(projects["a"], (USE, READ)),
        "admin": KeySpec(projects["a"], (MANAGE,), workspace_permissions=(MANAGE,)),
        "project_admin": KeySpec(projects["a"], (MANAGE, USE)),
        "user_only": KeySpec(projects["a"], (READ,)),
        "b": KeySpec(projects["b"], (USE, MANAGE, READ), workspace_id="ws-2",
                     workspace_permissions=(MANAGE,)),
        "other": KeySpec(projects["other"], (USE, MANAGE, READ), org_id="org-2",
                         workspace_permissions=(MANAGE,)),
        "ws": KeySpec("", (USE, MANAGE)),
    }
    async with open_plane(nats_server, store, tmp_path_factory.mktemp("proxy"), keys,
                          outbound_allowlist=("127.0.0.1", "localhost")) as plane:
        yield ProxyPlane(plane.http, plane.context, plane.store, plane.writer, plane.keys,
                         plane.subjects, plane.app, projects)
        await proxy_of(plane.context).sink.drain(30)
