"""The event API tests' plane: the data-plane app in-process over real NATS and chDB.

``api`` (one per test module) runs the FastAPI app with a real :class:`DataPlaneContext`
(a NATS connection, a :class:`DirectStoreClient` over the session's chDB store, an
:class:`ApiKeyAuthenticator` with minted keys) and a real :class:`WriterLoop` as an
asyncio task on the same NATS, so a test writes over HTTP and reads back over HTTP once the
writer has stored it. Ray is not started. Keys: ``a`` (write + read, project A),
``reader`` (read only, project A), ``b`` (write + read, project B).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js.errors import NotFoundError

from apiary.actors._writer_loop import WriterLoop
from apiary.actors.clickhouse import DirectStoreClient
from apiary.api._context import DataPlaneContext
from apiary.api.app import create_app
from apiary.auth import ApiKeyAuthenticator, Permission, Principal, StoredKey, mint_api_key
from apiary.objects import LocalObjectStore
from apiary.queue import NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings
from apiary.store import EventStore

HONEYHIVE = Path(__file__).resolve().parents[1] / "fixtures" / "honeyhive"


def honeyhive_body(name: str) -> dict[str, Any]:
    """A REST body the unmodified HoneyHive SDK sent (tests/fixtures/honeyhive/)."""
    body: dict[str, Any] = json.loads((HONEYHIVE / f"{name}.json").read_text())
    return body


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Api:
    http: httpx.AsyncClient
    store: EventStore
    writer: WriterLoop
    keys: dict[str, str]
    projects: dict[str, str]

    def auth(self, who: str = "a") -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys[who]}"}

    async def call(self, method: str, path: str, who: str = "a",
                   **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, path, headers=self.auth(who), **kwargs)

    async def ok(self, method: str, path: str, who: str = "a", **kwargs: Any) -> Any:
        """The JSON of a call that must answer exactly 200 (as the SDK requires)."""
        response = await self.call(method, path, who, **kwargs)
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()

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

    async def search(self, body: dict[str, Any], who: str = "a") -> dict[str, Any]:
        result: dict[str, Any] = await self.ok("POST", "/v1/events/search", who, json=body)
        return result

    async def settled(self, wait_s: float = 20.0) -> None:
        """Until the writer has acknowledged everything published so far."""
        js = self.writer._js
        await until(lambda: _drained(js), wait_s)


async def _drained(js: Any) -> bool:
    info = await js.consumer_info("events", "writers")
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def until(predicate: Callable[[], Awaitable[bool]], wait_s: float = 20.0) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _key(project: str, *permissions: Permission) -> tuple[str, StoredKey]:
    key = mint_api_key()
    principal = Principal(subject=f"key:{key.key_id}", org_id="org-1", workspace_id="ws-1",
                          project_id=project, permissions=frozenset(permissions))
    return key.value, StoredKey(key.key_id, key.secret_hash, principal)


@pytest.fixture(scope="module")
async def api(
    nats_server: NatsServer, store: EventStore, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    data_dir = tmp_path_factory.mktemp("api")
    settings = ApiarySettings(data_dir=data_dir, writer_flush_interval_s=0.05)
    nc = await connect(nats_server.url, name="api-test-setup")
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, settings)
    suffix = uuid.uuid4().hex[:10]
    projects = {"a": f"proj-a-{suffix}", "b": f"proj-b-{suffix}"}
    write_a, stored_a = _key(projects["a"], Permission.EVENTS_WRITE, Permission.EVENTS_READ)
    read_a, stored_r = _key(projects["a"], Permission.EVENTS_READ)
    write_b, stored_b = _key(projects["b"], Permission.EVENTS_WRITE, Permission.EVENTS_READ)
    client = DirectStoreClient(store)
    context = await DataPlaneContext.open(
        settings, nats_server.url, ApiKeyAuthenticator([stored_a, stored_r, stored_b]),
        store=client)
    writer = WriterLoop(js=js, store=client, objects=LocalObjectStore(data_dir / "objects"),
                        settings=settings, name="api-test-writer")
    task = asyncio.create_task(writer.run())
    transport = httpx.ASGITransport(app=create_app(context))
    async with httpx.AsyncClient(transport=transport, base_url="http://dp") as http:
        yield Api(http, store, writer, {"a": write_a, "reader": read_a, "b": write_b},
                  projects)
    writer.stop()
    await task
    await context.close()
    await nc.close()
