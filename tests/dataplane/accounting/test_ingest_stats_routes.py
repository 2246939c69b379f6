"""``GET /v1/ingest/stats`` and ``GET /v1/admin/ingest/stats`` over the data plane's app
(tests/_dataplane.py: real NATS, chDB and writer): spans over OTLP and REST events are
accounted exactly while the writer runs and once it drained; another project's key, a
workspace key, a write-only key and API keys on the admin route get no numbers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from _dataplane import KeySpec, Plane, open_plane
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from apiary.dataplane.auth import Permission
from apiary.queue import NatsServer
from apiary.store import EventStore

ADMIN_TOKEN = "accounting-admin-token-" + "x" * 24
READ_WRITE = (Permission.EVENTS_WRITE, Permission.EVENTS_READ)


@dataclass
class StatsPlane(Plane):
    projects: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
async def plane(nats_server: NatsServer, store: EventStore,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[StatsPlane]:
    suffix = uuid.uuid4().hex[:10]
    projects = {"a": f"proj-a-{suffix}", "b": f"proj-b-{suffix}"}
    keys = {"a": KeySpec(projects["a"], READ_WRITE),
            "b": KeySpec(projects["b"], READ_WRITE),
            "writer": KeySpec(projects["a"], (Permission.EVENTS_WRITE,)),
            "workspace": KeySpec("", (Permission.EVENTS_READ,))}
    async with open_plane(nats_server, store, tmp_path_factory.mktemp("accounting"), keys,
                          admin_token=ADMIN_TOKEN) as p:
        yield StatsPlane(p.http, p.context, p.store, p.writer, p.keys, p.subjects, p.app,
                         projects)


def _otlp(n: int) -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    trace_id = uuid.uuid4().bytes
    for i in range(n):
        scope.spans.add(trace_id=trace_id, span_id=(i + 1).to_bytes(8, "big"), name=f"s{i}",
                        start_time_unix_nano=time.time_ns(),
                        end_time_unix_nano=time.time_ns() + 1000)
    return request.SerializeToString()


def _balanced(body: dict[str, Any]) -> None:
    for part in [body, *body["by_kind"].values()]:
        for unit in ("messages", "rows"):
            assert part["accepted"][unit] == sum(
                part[s][unit] for s in ("stored", "dead_lettered", "in_flight")), part


async def test_spans_and_events_are_accounted_exactly(plane: StatsPlane) -> None:
    project = plane.projects["a"]
    answered = 0  # spans and events answered 200
    done = asyncio.Event()

    async def send() -> None:
        nonlocal answered
        for i in range(24):
            n = 1 + i % 5
            if i % 3:
                response = await plane.call(
                    "POST", "/v1/traces", content=_otlp(n),
                    headers={"content-type": "application/x-protobuf"})
            else:
                response = await plane.call("POST", "/v1/events/batch", json={
                    "events": [{"event_type": "tool", "inputs": {"i": i, "j": j}}
                               for j in range(n)]})
            assert response.status_code == 200, response.text
            answered += n
        done.set()

    sender = asyncio.create_task(send())
    polls = 0
    while not done.is_set():
        acknowledged = answered
        body = await plane.ok("GET", "/v1/ingest/stats")
        assert body["project_id"] == project
        _balanced(body)
        assert body["accepted"]["rows"] >= acknowledged
        polls += 1
    await sender
    await plane.settled()
    body = await plane.ok("GET", "/v1/ingest/stats", params={"project_id": project})
    _balanced(body)
    assert body["accepted"]["rows"] == answered == body["stored"]["rows"]
    assert body["in_flight"] == {"messages": 0, "rows": 0}
    assert body["dead_lettered"] == {"messages": 0, "rows": 0}
    assert set(body["by_kind"]) == {"spans", "api"}
    assert plane.store.count_events(project) == answered
    assert polls >= 1
    assert body["as_of"] <= time.time()


async def test_another_projects_key_gets_no_numbers(plane: StatsPlane) -> None:
    victim = plane.projects["a"]
    response = await plane.call("POST", "/v1/traces", content=_otlp(3),
                                headers={"content-type": "application/x-protobuf"})
    assert response.status_code == 200
    for who in ("b", "workspace", "writer"):
        refused = await plane.fails(403, "GET", "/v1/ingest/stats", who,
                                    params={"project_id": victim})
        assert "accepted" not in refused, refused
        assert "rows" not in str(refused), refused
    refused = await plane.fails(403, "GET", "/v1/ingest/stats", "workspace")
    assert "accepted" not in refused
    own = await plane.ok("GET", "/v1/ingest/stats", "b")
    assert own["project_id"] == plane.projects["b"]
    anonymous = await plane.http.get("/v1/ingest/stats")
    assert anonymous.status_code == 401
    # The admin route takes the admin token only: an API key, whatever its project, is 403.
    for who in ("a", "b"):
        await plane.fails(403, "GET", "/v1/admin/ingest/stats", who)


async def test_the_operator_sees_every_project(plane: StatsPlane) -> None:
    response = await plane.call("POST", "/v1/events/batch", "b", json={
        "events": [{"event_type": "tool", "inputs": {"k": k}} for k in range(4)]})
    assert response.status_code == 200
    await plane.settled()
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    answer = await plane.http.get("/v1/admin/ingest/stats", headers=admin)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    projects = {p["project_id"]: p for p in body["projects"]}
    assert {plane.projects["a"], plane.projects["b"]} <= set(projects)
    for unit in ("messages", "rows"):
        assert body["totals"]["accepted"][unit] == sum(
            p["accepted"][unit] for p in body["projects"])
    assert projects[plane.projects["b"]]["stored"]["rows"] >= 4
    one = await plane.http.get("/v1/admin/ingest/stats", headers=admin,
                               params={"project_id": plane.projects["b"]})
    assert [p["project_id"] for p in one.json()["projects"]] == [plane.projects["b"]]
    assert (await plane.http.get("/v1/admin/ingest/stats", headers=admin,
                                 params={"project_id": "a.b"})).status_code == 400
