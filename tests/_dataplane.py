"""A data plane in-process, for tests that need keys of their own choosing.

The wiring of every in-process data-plane test
(``tests/dataplane/events/_event_api_plane.py`` builds its ``api`` fixture on it): the
FastAPI app over ``httpx.ASGITransport`` with a real :class:`DataPlaneContext` (NATS from
the session's ``nats_server``, a :class:`DirectStoreClient` over the session's chDB
``store``, dpdb in a SQLite file under ``data_dir``), and a real :class:`WriterLoop` on the
same NATS, so a test writes over HTTP and reads back over HTTP once the writer stored it.
Ray is not started.
Keys are described by :class:`KeySpec` (tenant and permissions), so tests can hold keys of
several projects, workspaces and organizations; ``who`` names the key of a call (``a``
unless told).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from nats.js.errors import NotFoundError

from apiary.credentials import mint_api_key
from apiary.dataplane.app import create_app
from apiary.dataplane.auth import ApiKeyAuthenticator, Permission, Principal, StoredKey
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.dataplane.writer import WriterLoop
from apiary.objects import LocalObjectStore
from apiary.queue import NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore


@dataclass(frozen=True)
class KeySpec:
    """A key's tenant and permissions. ``workspace_permissions`` are those it holds on the
    workspace itself (``Principal.workspace_permissions``); None: a workspace key
    (``project_id`` empty) holds its permissions there, a project key nothing."""

    project_id: str
    permissions: tuple[Permission, ...]
    workspace_id: str = "ws-1"
    org_id: str = "org-1"
    workspace_permissions: tuple[Permission, ...] | None = None


@dataclass
class Plane:
    http: httpx.AsyncClient
    context: DataPlaneContext
    store: EventStore
    writer: WriterLoop
    keys: dict[str, str]
    subjects: dict[str, str]
    app: FastAPI

    def auth(self, who: str = "a") -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys[who]}"}

    async def call(self, method: str, path: str, who: str = "a",
                   **kwargs: Any) -> httpx.Response:
        headers = {**self.auth(who), **kwargs.pop("headers", {})}
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def ok(self, method: str, path: str, who: str = "a", status: int = 200,
                 **kwargs: Any) -> Any:
        response = await self.call(method, path, who, **kwargs)
        assert response.status_code == status, (response.status_code, response.text)
        return response.json()

    async def fails(self, status: int, method: str, path: str, who: str,
                    **kwargs: Any) -> dict[str, Any]:
        """The error body of a call that must fail with ``status``: ``{message, errorCode}``."""
        response = await self.call(method, path, who, **kwargs)
        assert response.status_code == status, (response.status_code, response.text)
        body: dict[str, Any] = response.json()
        assert set(body) >= {"message", "errorCode"}, body
        return body

    async def event(self, event_id: str, who: str = "a",
                    until: Callable[[dict[str, Any]], bool] | None = None,
                    wait_s: float = 20.0) -> dict[str, Any]:
        """``GET /v1/events/{id}`` once the writer stored it (and ``until`` holds)."""
        deadline = time.monotonic() + wait_s
        last: Any = None
        while time.monotonic() < deadline:
            response = await self.call("GET", f"/v1/events/{event_id}", who)
            if response.status_code == 200:
                last = response.json()["event"]
                if until is None or until(last):
                    return dict(last)
            else:
                assert response.status_code == 404, response.text
            await asyncio.sleep(0.05)
        raise AssertionError(f"event {event_id} not as expected in time; last: {last}")

    async def settled(self, wait_s: float = 20.0) -> None:
        """Until the writer has acknowledged everything published so far."""
        js = self.writer._js

        async def drained() -> bool:
            info = await js.consumer_info("events", "writers")
            return bool(info.num_pending == 0 and info.num_ack_pending == 0)

        await until(drained, wait_s)


async def until(predicate: Callable[[], Awaitable[bool]], wait_s: float = 20.0) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


@contextlib.asynccontextmanager
async def open_plane(nats_server: NatsServer, store: EventStore, data_dir: Path,
                     keys: Mapping[str, KeySpec], **settings: Any) -> AsyncIterator[Plane]:
    """The data plane with one minted API key per entry of ``keys``."""
    config = ApiarySettings(data_dir=data_dir, writer_flush_interval_s=0.05, **settings)
    nc = await connect(nats_server.url, name="plane-test-setup")
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, config)
    values: dict[str, str] = {}
    subjects: dict[str, str] = {}
    stored: list[StoredKey] = []
    for name, spec in keys.items():
        key = mint_api_key()
        on_workspace = (spec.workspace_permissions if spec.workspace_permissions is not None
                        else () if spec.project_id else spec.permissions)
        principal = Principal(subject=f"key:{key.key_id}", org_id=spec.org_id,
                              workspace_id=spec.workspace_id, project_id=spec.project_id,
                              permissions=frozenset(spec.permissions),
                              workspace_permissions=frozenset(on_workspace))
        values[name] = key.value
        subjects[name] = principal.subject
        stored.append(StoredKey(key.key_id, key.secret_hash, principal))
    client = DirectStoreClient(store)
    context = await DataPlaneContext.open(config, nats_server.url,
                                          ApiKeyAuthenticator(stored), store=client)
    writer = WriterLoop(js=js, store=client, objects=LocalObjectStore(data_dir / "objects"),
                        settings=config, name="plane-test-writer")
    task = asyncio.create_task(writer.run())
    app = create_app(context)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://dp",
                                     timeout=60) as http:
            yield Plane(http, context, store, writer, values, subjects, app)
    finally:
        writer.stop()
        await task
        await context.close()
        await nc.close()
