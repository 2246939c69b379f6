"""The data plane under a real control plane: keys and tokens it issues, and nothing else.

The control plane runs as a real HTTP server (uvicorn) over its own SQLite cpdb; the data
plane's app runs in-process with the authenticator `apiary up` gives it (key exchange and
ES256 verification against the control plane's JWKS), over real NATS and chDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from _accounts import verify_email
from _servers import http_server
from nats.js.errors import NotFoundError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from apiary.control import ControlPlane, admin
from apiary.control.api import create_control_plane_app
from apiary.dataplane.app import create_app
from apiary.dataplane.auth import control_plane_authenticator
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.dataplane.writer import WriterLoop
from apiary.objects import LocalObjectStore
from apiary.queue import NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

ISSUER = "http://cp.trust.test/cp"
DP_ID = "dp-trust"
PASSWORD = "a long enough password 42"


@dataclass
class World:
    cp: httpx.Client
    dp: httpx.AsyncClient
    store: EventStore
    projects: dict[str, str]
    keys: dict[str, str]
    viewer_token: str
    owner_session: dict[str, str]
    settings: ApiarySettings


def _signup(cp: httpx.Client, email: str, settings: ApiarySettings) -> dict[str, str]:
    response = cp.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    verify_email(settings, str(cp.base_url), email)  # an unverified account owns nothing
    return {"authorization": f"Bearer {response.json()['session_token']}"}


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ApiarySettings]]:
    settings = ApiarySettings(data_dir=tmp_path_factory.mktemp("cp"), cp_issuer=ISSUER,
                              data_plane_id=DP_ID, cp_jwks_cache_s=1)
    admin.data_planes_register(settings, dp_id=DP_ID, name="trust", url="http://dp.test")
    admin.data_planes_register(settings, dp_id="another-dp", name="other", url="http://x.test")
    cp = ControlPlane.open(settings)
    with http_server(create_control_plane_app(cp)) as url:
        yield url, settings
    cp.close()


def _set_up_tenants(cp: httpx.Client, settings: ApiarySettings) -> dict[str, Any]:
    """On the control plane: an owner, one org with projects a and b, their keys, and a
    viewer of project a holding a token for this data plane."""
    owner = _signup(cp, f"owner-{uuid.uuid4().hex[:6]}@example.com", settings)
    org = cp.post("/v1/orgs", headers=owner, json={"name": "Trust"}).json()
    ws = cp.post(f"/v1/orgs/{org['id']}/workspaces", headers=owner, json={"name": "w"}).json()
    projects = {
        name: cp.post(f"/v1/workspaces/{ws['id']}/projects", headers=owner,
                      json={"name": name}).json()["id"]
        for name in ("a", "b")
    }
    keys = {
        name: cp.post(f"/v1/projects/{projects[name]}/keys", headers=owner,
                      json={"name": name}).json()["api_key"]
        for name in ("a", "b")
    }
    keys["a-revocable"] = cp.post(f"/v1/projects/{projects['a']}/keys", headers=owner,
                                  json={"name": "revocable"}).json()["api_key"]
    viewer_email = f"viewer-{uuid.uuid4().hex[:6]}@example.com"
    viewer = _signup(cp, viewer_email, settings)
    invited = cp.post(f"/v1/orgs/{org['id']}/invitations", headers=owner,
                      json={"email": viewer_email, "role": "viewer",
                            "project_id": projects["a"]})
    assert invited.status_code == 201, invited.text
    accepted = cp.post("/v1/invitations/accept", headers=viewer,
                       json={"token": invited.json()["token"]})
    assert accepted.status_code in (200, 201), accepted.text
    token = cp.post("/v1/auth/token", headers=viewer,
                    json={"audience": DP_ID, "project_id": projects["a"]})
    assert token.status_code == 200, token.text
    return {"owner": owner, "projects": projects, "keys": keys,
            "token": token.json()["access_token"]}


@pytest.fixture(scope="module")
async def world(
    control_plane: tuple[str, ApiarySettings], nats_server: NatsServer, store: EventStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[World]:
    cp_url, cp_settings = control_plane
    cp = httpx.Client(base_url=cp_url, timeout=30)
    tenants = await asyncio.to_thread(_set_up_tenants, cp, cp_settings)

    dp_settings = cp_settings.model_copy(update={
        "data_dir": tmp_path_factory.mktemp("dp"), "control_plane_url": cp_url,
        "jwt_issuer": ISSUER, "auth_cache_max_s": 1.0, "auth_negative_cache_s": 0.2,
        "writer_flush_interval_s": 0.1,
    })
    nc = await connect(nats_server.url, name="trust-setup")
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, dp_settings)
    client = DirectStoreClient(store)
    context = await DataPlaneContext.open(dp_settings, nats_server.url,
                                          control_plane_authenticator(dp_settings), store=client)
    writer = WriterLoop(js=js, store=client, objects=LocalObjectStore(dp_settings.data_dir),
                        settings=dp_settings, name="trust-writer")
    task = asyncio.create_task(writer.run())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context)),
                                 base_url="http://dp") as dp:
        yield World(cp, dp, store, tenants["projects"], tenants["keys"], tenants["token"],
                    tenants["owner"], dp_settings)
    writer.stop()
    await task
    await context.close()
    await nc.close()
    await asyncio.to_thread(cp.close)


def _body(session: str, name: str) -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=uuid.uuid4().bytes, span_id=uuid.uuid4().bytes[:8], name=name,
        start_time_unix_nano=time.time_ns(), end_time_unix_nano=time.time_ns() + 10)
    span.attributes.add(key="honeyhive.session_id").value.string_value = session
    return request.SerializeToString()


def _bearer(credential: str, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {credential}", **extra}


async def _ingest(world: World, credential: str, session: str, name: str) -> httpx.Response:
    return await world.dp.post("/v1/traces", content=_body(session, name),
                               headers=_bearer(credential, **{
                                   "content-type": "application/x-protobuf"}))


async def _export(world: World, credential: str, **body: Any) -> httpx.Response:
    return await world.dp.post("/v1/events/export", json=body, headers=_bearer(credential))


async def _wait_stored(world: World, project: str, n: int) -> None:
    deadline = time.monotonic() + 15
    while world.store.count_events(project) < n:
        assert time.monotonic() < deadline, "events were not stored"
        await asyncio.sleep(0.05)


async def test_keys_write_only_their_own_project_and_read_only_their_own(world: World) -> None:
    session_a, session_b = f"sa-{uuid.uuid4()}", f"sb-{uuid.uuid4()}"
    assert (await _ingest(world, world.keys["a"], session_a, "a-span")).status_code == 200
    assert (await _ingest(world, world.keys["b"], session_b, "b-span")).status_code == 200
    await _wait_stored(world, world.projects["a"], 1)
    await _wait_stored(world, world.projects["b"], 1)

    seen_by_a = (await _export(world, world.keys["a"])).json()["events"]
    seen_by_b = (await _export(world, world.keys["b"])).json()["events"]
    assert {e["event_name"] for e in seen_by_a} >= {"a-span"}
    assert "b-span" not in {e["event_name"] for e in seen_by_a}
    assert {e["project_id"] for e in seen_by_b} == {world.projects["b"]}

    # Sessions: the other project's session does not exist for this key.
    own = await world.dp.get(f"/v1/sessions/{session_a}", headers=_bearer(world.keys["a"]))
    foreign = await world.dp.get(f"/v1/sessions/{session_a}", headers=_bearer(world.keys["b"]))
    assert own.status_code == 200
    assert foreign.status_code == 404
    listed = (await world.dp.get("/v1/sessions", headers=_bearer(world.keys["b"]))).json()
    assert session_a not in {s["session_id"] for s in listed["sessions"]}
    assert session_b in {s["session_id"] for s in listed["sessions"]}


async def test_a_viewer_reads_but_cannot_write(world: World) -> None:
    refused = await _ingest(world, world.viewer_token, "viewer-session", "nope")
    assert refused.status_code == 403
    allowed = await _export(world, world.viewer_token)
    assert allowed.status_code == 200
    assert {e["project_id"] for e in allowed.json()["events"]} <= {world.projects["a"]}


async def test_a_revoked_key_stops_working_within_the_cache_lifetime(world: World) -> None:
    key = world.keys["a-revocable"]
    assert (await _ingest(world, key, "rev", "before-revocation")).status_code == 200
    key_id = key.split("_")[2]
    revoked = world.cp.delete(f"/v1/projects/{world.projects['a']}/keys/{key_id}",
                              headers=world.owner_session)
    assert revoked.status_code == 200, revoked.text
    await asyncio.sleep(world.settings.auth_cache_max_s + 0.3)
    after = await _ingest(world, key, "rev", "after-revocation")
    assert after.status_code == 401


async def test_a_token_for_another_data_plane_is_refused(world: World) -> None:
    other = world.cp.post("/v1/auth/token", headers=_bearer(world.keys["a"]),
                          json={"audience": "another-dp"})
    assert other.status_code == 200, other.text
    response = await _export(world, other.json()["access_token"])
    assert response.status_code == 401
    assert "data plane" in response.json()["message"]


async def test_a_key_the_control_plane_never_issued_is_401(world: World) -> None:
    forged = "hh_ingst_" + "Z" * 24 + "_" + "q" * 64
    response = await _ingest(world, forged, "forged", "forged")
    assert response.status_code == 401
