"""The product plane of the feature API tests (charts, configuration, datasets, datapoints,
runs; ``tests/dataplane/<feature>/``): the data-plane app in-process
(``httpx.ASGITransport``) with a real :class:`DataPlaneContext` — real NATS (the session's
``nats_server``), a :class:`DirectStoreClient` over the session's chDB ``store``, dpdb in
a SQLite file of its own (or PostgreSQL, ``dp_database_url``) — and an
:class:`ApiKeyAuthenticator` with minted keys for two projects. Ray is not started.

Keys: ``a`` (events and datasets, read and write, project A), ``a_read`` (read only),
``a_events`` (events only, no datasets), ``b`` (everything, project B), ``ws`` (a
workspace-scoped credential: no project).

Tests insert run events straight into the store (``insert``): that is the storage layer the
results are computed from, not the API under test.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from apiary.credentials import mint_api_key
from apiary.dataplane.app import create_app
from apiary.dataplane.auth import ApiKeyAuthenticator, Permission, Principal, StoredKey
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.event import Event, Tenant, new_event
from apiary.queue import NatsServer
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

HONEYHIVE = Path(__file__).resolve().parent / "fixtures" / "honeyhive"
ALL = (Permission.EVENTS_READ, Permission.EVENTS_WRITE, Permission.DATASETS_READ,
       Permission.DATASETS_WRITE)


def honeyhive_body(name: str) -> dict[str, Any]:
    """A REST body the unmodified HoneyHive SDK sent (tests/fixtures/honeyhive/)."""
    body: dict[str, Any] = json.loads((HONEYHIVE / f"{name}.json").read_text())
    return body


def _key(project: str, *permissions: Permission) -> tuple[str, StoredKey]:
    key = mint_api_key()
    principal = Principal(subject=f"key:{key.key_id}", org_id="org-1", workspace_id="ws-1",
                          project_id=project, permissions=frozenset(permissions))
    return key.value, StoredKey(key.key_id, key.secret_hash, principal)


@dataclass
class Product:
    http: httpx.AsyncClient
    context: DataPlaneContext
    store: EventStore
    keys: dict[str, str]
    projects: dict[str, str]

    def auth(self, who: str = "a") -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys[who]}"}

    async def call(self, method: str, path: str, who: str = "a",
                   **kwargs: Any) -> httpx.Response:
        headers = {**self.auth(who), **kwargs.pop("headers", {})}
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def ok(self, method: str, path: str, who: str = "a", **kwargs: Any) -> Any:
        """The JSON of a call that must answer exactly 200 (as the SDK requires)."""
        response = await self.call(method, path, who, **kwargs)
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()

    async def fails(self, status: int, method: str, path: str, who: str = "a",
                    **kwargs: Any) -> dict[str, Any]:
        """The error body of a call that must fail with ``status`` (never a 500)."""
        response = await self.call(method, path, who, **kwargs)
        assert response.status_code == status, (response.status_code, response.text)
        body: dict[str, Any] = response.json()
        assert isinstance(body["message"], str)
        assert body["message"]
        assert isinstance(body["errorCode"], str)
        assert body["errorCode"]
        return body

    def insert(self, project: str, events: list[Event]) -> None:
        """Store events of ``project`` as the writer would (one version)."""
        tenant: Tenant = {"org_id": "org-1", "workspace_id": "ws-1", "project_id": project}
        self.store.insert_events(tenant, time.time_ns(), events)


def event(**fields: Any) -> Event:
    """An event with an id, a session and times unless given."""
    fields.setdefault("event_id", str(uuid.uuid4()))
    fields.setdefault("session_id", str(uuid.uuid4()))
    fields.setdefault("start_time", time.time() * 1000)
    fields.setdefault("end_time", fields["start_time"] + 5)
    return new_event(**fields)


async def open_product(nats_server: NatsServer, store: EventStore, data_dir: Any, *,
                       extra_keys: dict[str, tuple[Permission, ...]] | None = None,
                       **settings: Any) -> tuple[Product, DataPlaneContext]:
    """A product plane; ``extra_keys`` adds keys of project A with the given permissions."""
    config = ApiarySettings(data_dir=data_dir, **settings)
    suffix = uuid.uuid4().hex[:10]
    projects = {"a": f"proj-a-{suffix}", "b": f"proj-b-{suffix}"}
    keys: dict[str, str] = {}
    stored: list[StoredKey] = []
    for who, project, permissions in (
        ("a", projects["a"], ALL),
        ("a_read", projects["a"], (Permission.EVENTS_READ, Permission.DATASETS_READ)),
        ("a_events", projects["a"], (Permission.EVENTS_READ, Permission.EVENTS_WRITE)),
        ("b", projects["b"], ALL),
        ("ws", "", ALL),
        *((name, projects["a"], perms) for name, perms in (extra_keys or {}).items()),
    ):
        keys[who], key = _key(project, *permissions)
        stored.append(key)
    context = await DataPlaneContext.open(config, nats_server.url, ApiKeyAuthenticator(stored),
                                          store=DirectStoreClient(store))
    transport = httpx.ASGITransport(app=create_app(context))
    http = httpx.AsyncClient(transport=transport, base_url="http://dp")
    return Product(http, context, store, keys, projects), context


@pytest.fixture(scope="module", name="product")
async def product_fixture(nats_server: NatsServer, store: EventStore,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Product]:
    plane, context = await open_product(nats_server, store, tmp_path_factory.mktemp("product"))
    yield plane
    await plane.http.aclose()
    await context.close()
