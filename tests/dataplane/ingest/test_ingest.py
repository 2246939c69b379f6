"""OTLP/HTTP ingestion through the data plane's HTTP app, over real NATS and real chDB.

The app runs in-process (ASGI) with a real :class:`DataPlaneContext`; a real writer loop
stores what it acknowledged. Every status the OTLP/HTTP contract names is exercised.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from google.rpc import status_pb2
from nats.js.errors import NotFoundError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from apiary.credentials import mint_api_key
from apiary.dataplane.app import create_app
from apiary.dataplane.auth import ApiKeyAuthenticator, Permission, Principal, StoredKey
from apiary.dataplane.enrich import session_id_for_trace
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.dataplane.writer import WriterLoop
from apiary.objects import LocalObjectStore
from apiary.queue import NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
LIMIT = 256 * 1024


@dataclass
class Plane:
    http: httpx.AsyncClient
    context: DataPlaneContext
    writer: WriterLoop
    store: EventStore
    keys: dict[str, str]
    projects: dict[str, str]

    def auth(self, who: str, content_type: str = "application/x-protobuf") -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys[who]}", "content-type": content_type}


def _key(project: str, *permissions: Permission) -> tuple[str, StoredKey]:
    key = mint_api_key()
    principal = Principal(subject=f"key:{key.key_id}", org_id="org", workspace_id="ws",
                          project_id=project, permissions=frozenset(permissions))
    return key.value, StoredKey(key.key_id, key.secret_hash, principal)


@pytest.fixture(scope="module")
async def plane(
    nats_server: NatsServer, store: EventStore, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Plane]:
    data_dir = tmp_path_factory.mktemp("plane")
    settings = ApiarySettings(data_dir=data_dir, ingest_max_body_bytes=LIMIT,
                              ingest_backlog_limit=50, writer_flush_interval_s=0.1)
    nc = await connect(nats_server.url, name="ingest-test-setup")
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, settings)
    projects = {"a": f"proj-a-{time.time_ns()}", "b": f"proj-b-{time.time_ns()}"}
    writer_a, stored_a = _key(projects["a"], Permission.EVENTS_WRITE, Permission.EVENTS_READ)
    reader_a, stored_r = _key(projects["a"], Permission.EVENTS_READ)
    writer_b, stored_b = _key(projects["b"], Permission.EVENTS_WRITE, Permission.EVENTS_READ)
    client = DirectStoreClient(store)
    context = await DataPlaneContext.open(
        settings, nats_server.url, ApiKeyAuthenticator([stored_a, stored_r, stored_b]),
        store=client)
    writer = WriterLoop(js=js, store=client, objects=LocalObjectStore(data_dir / "objects"),
                        settings=settings, name="ingest-test-writer")
    task = asyncio.create_task(writer.run())
    transport = httpx.ASGITransport(app=create_app(context))
    async with httpx.AsyncClient(transport=transport, base_url="http://dp") as http:
        yield Plane(http, context, writer, store, {"a": writer_a, "reader": reader_a,
                                                    "b": writer_b}, projects)
    writer.stop()
    await task
    await context.close()
    await nc.close()


def _otel_body(n: int = 3, *, bad_span: bool = False) -> bytes:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    trace_id = time.time_ns().to_bytes(16, "big")
    for i in range(n):
        span = scope.spans.add(trace_id=trace_id, span_id=(i + 1).to_bytes(8, "big"),
                               name=f"step-{i}", kind=Span.SPAN_KIND_INTERNAL,
                               start_time_unix_nano=time.time_ns(),
                               end_time_unix_nano=time.time_ns() + 1000)
        span.attributes.add(key="gen_ai.request.model").value.string_value = "gpt-4o"
    if bad_span:
        scope.spans.add(trace_id=trace_id, span_id=b"\x01\x02\x03", name="broken")
    return request.SerializeToString()


async def _stored(plane: Plane, project: str, n: int, wait_s: float = 15.0) -> int:
    deadline = time.monotonic() + wait_s
    count = 0
    while time.monotonic() < deadline:
        count = plane.store.count_events(project)
        if count >= n:
            return count
        await asyncio.sleep(0.05)
    return count


async def test_protobuf_export_is_acknowledged_in_protobuf_and_stored(plane: Plane) -> None:
    before = plane.store.count_events(plane.projects["a"])
    response = await plane.http.post("/v1/traces", content=_otel_body(3),
                                      headers=plane.auth("a"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    decoded = ExportTraceServiceResponse.FromString(response.content)
    assert decoded.partial_success.rejected_spans == 0
    assert await _stored(plane, plane.projects["a"], before + 3) == before + 3


# (span id, parent span id, string attributes)
SpanSpec = tuple[bytes, bytes, dict[str, str]]


def _spans_body(trace_id: bytes, spans: list[SpanSpec]) -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for span_id, parent, attributes in spans:
        span = scope.spans.add(trace_id=trace_id, span_id=span_id, parent_span_id=parent,
                               name="step", start_time_unix_nano=time.time_ns(),
                               end_time_unix_nano=time.time_ns() + 1000)
        for key, value in attributes.items():
            span.attributes.add(key=key).value.string_value = value
    return request.SerializeToString()


async def _export_in_turn(plane: Plane, trace_id: bytes, *exports: list[SpanSpec]) -> None:
    """Export each list of spans of the trace in its own request, each stored before the
    next is sent (as OpenTelemetry exports children before their root)."""
    for spans in exports:
        response = await plane.http.post("/v1/traces", content=_spans_body(trace_id, spans),
                                         headers=plane.auth("a"))
        assert response.status_code == 200
        await _settled(plane)


async def test_spans_exported_before_the_root_that_names_the_session_join_it(
    plane: Plane,
) -> None:
    """OpenTelemetry exports a span when it ends, so a root arrives after its children;
    here only the root names the session, and the children must still end up in it."""
    trace_id, root_id = os.urandom(16), os.urandom(8)
    session = f"sess-{time.time_ns()}"
    children = [(os.urandom(8), root_id, {"gen_ai.request.model": "gpt-4o"})
                for _ in range(3)]
    root = (root_id, b"", {"honeyhive.session_id": session, "honeyhive_event_type": "session",
                           "honeyhive_metadata.tier": "gold"})
    await _export_in_turn(plane, trace_id, children, [root])

    tree = await plane.http.get(f"/v1/sessions/{session}", headers=plane.auth("a"))
    assert tree.status_code == 200
    assert tree.json()["event_count"] == 4
    kids = tree.json()["session"]["children"]
    assert len(kids) == 3
    assert {k["session_id"] for k in kids} == {session}
    assert {k["metadata"]["tier"] for k in kids} == {"gold"}
    listed = await plane.http.get("/v1/sessions", params={"limit": 1000},
                                  headers=plane.auth("a"))
    ids = {s["session_id"] for s in listed.json()["sessions"]}
    assert session in ids
    assert session_id_for_trace(trace_id.hex()) not in ids


async def test_spans_stored_before_their_session_span_inherit_its_metadata(
    plane: Plane,
) -> None:
    """Every span names the session, but the session span (the root) arrives last."""
    trace_id, root_id = os.urandom(16), os.urandom(8)
    session = f"sess-{time.time_ns()}"
    children = [(os.urandom(8), root_id, {"session.id": session,
                                          "gen_ai.request.model": "gpt-4o"})
                for _ in range(2)]
    root = (root_id, b"", {"session.id": session, "honeyhive_event_type": "session",
                           "honeyhive_metadata.tier": "gold",
                           "honeyhive_user_properties.plan": "team"})
    await _export_in_turn(plane, trace_id, children, [root])

    tree = (await plane.http.get(f"/v1/sessions/{session}", headers=plane.auth("a"))).json()
    assert tree["event_count"] == 3
    kids = tree["session"]["children"]
    assert [k["metadata"]["tier"] for k in kids] == ["gold", "gold"]
    assert [k["user_properties"]["plan"] for k in kids] == ["team", "team"]


async def test_honeyhive_sdk_json_body_on_its_own_path(plane: Plane) -> None:
    body = (FIXTURES / "honeyhive" / "traces_json_tracing.json").read_bytes()
    response = await plane.http.post("/opentelemetry/v1/traces", content=body,
                                      headers=plane.auth("b", "application/json"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json().get("partialSuccess", {}).get("rejectedSpans", 0) == 0
    assert await _stored(plane, plane.projects["b"], 1) >= 1


async def test_gzip_body_is_accepted(plane: Plane) -> None:
    before = plane.store.count_events(plane.projects["a"])
    response = await plane.http.post(
        "/v1/traces", content=gzip.compress(_otel_body(2)),
        headers={**plane.auth("a"), "content-encoding": "gzip"})
    assert response.status_code == 200
    assert await _stored(plane, plane.projects["a"], before + 2) == before + 2


async def test_partial_success_names_the_rejected_span(plane: Plane) -> None:
    response = await plane.http.post("/v1/traces", content=_otel_body(2, bad_span=True),
                                      headers=plane.auth("a"))
    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 1
    assert "010203" in partial.error_message


async def test_malformed_protobuf_is_400_with_a_status_body(plane: Plane) -> None:
    response = await plane.http.post("/v1/traces", content=b"\xff\xff\xff garbage",
                                      headers=plane.auth("a"))
    assert response.status_code == 400
    status = status_pb2.Status.FromString(response.content)
    assert status.code == 3
    assert "protobuf" in status.message


async def test_malformed_json_is_400_with_message_and_error_code(plane: Plane) -> None:
    response = await plane.http.post("/v1/traces", content=b'{"resourceSpans": 7}',
                                      headers=plane.auth("a", "application/json"))
    assert response.status_code == 400
    body = response.json()
    assert body["errorCode"] == "malformed_payload"
    assert "resourceSpans" in body["message"]


async def test_corrupt_gzip_is_400(plane: Plane) -> None:
    response = await plane.http.post("/v1/traces", content=b"\x1f\x8b\x08\x00broken",
                                      headers={**plane.auth("a"), "content-encoding": "gzip"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthenticated"),
        ({"authorization": "Basic abc"}, 401, "unauthenticated"),
        ({"authorization": "Bearer hh_ingst_" + "a" * 24 + "_" + "b" * 64}, 401,
         "unauthenticated"),
    ],
)
async def test_missing_or_unknown_credentials_are_401(
    plane: Plane, headers: dict[str, str], status: int, code: str
) -> None:
    response = await plane.http.post(
        "/v1/traces", content=_otel_body(1),
        headers={"content-type": "application/json", **headers})
    assert response.status_code == status
    assert response.json()["errorCode"] == code


async def test_a_read_only_key_may_not_ingest(plane: Plane) -> None:
    response = await plane.http.post("/v1/traces", content=_otel_body(1),
                                      headers=plane.auth("reader", "application/json"))
    assert response.status_code == 403
    assert response.json()["errorCode"] == "forbidden"


async def test_body_above_the_limit_is_413(plane: Plane) -> None:
    response = await plane.http.post("/v1/traces", content=b"\x00" * (LIMIT + 1),
                                      headers=plane.auth("a"))
    assert response.status_code == 413


async def test_streamed_body_above_the_limit_is_413(plane: Plane) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(LIMIT // 4096 + 2):
            yield b"\x00" * 4096

    response = await plane.http.post("/v1/traces", content=chunks(), headers=plane.auth("a"))
    assert response.status_code == 413


async def test_gzip_bomb_is_413_not_inflated(plane: Plane) -> None:
    bomb = gzip.compress(b"\x00" * (LIMIT * 8))
    assert len(bomb) < LIMIT
    response = await plane.http.post("/v1/traces", content=bomb,
                                      headers={**plane.auth("a"), "content-encoding": "gzip"})
    assert response.status_code == 413


@pytest.mark.parametrize(
    "headers",
    [{"content-type": "text/plain"}, {"content-type": "application/json; charset=latin-1"},
     {"content-encoding": "br"}],
)
async def test_unknown_media_type_or_encoding_is_415(
    plane: Plane, headers: dict[str, str]
) -> None:
    response = await plane.http.post("/v1/traces", content=_otel_body(1),
                                      headers={**plane.auth("a"), **headers})
    assert response.status_code == 415


async def test_replica_at_its_inflight_limit_answers_429_with_retry_after(plane: Plane) -> None:
    slots = [plane.context.admit() for _ in range(plane.context.settings.ingest_max_inflight)]
    for slot in slots:
        slot.__enter__()
    try:
        response = await plane.http.post("/v1/traces", content=_otel_body(1),
                                          headers=plane.auth("a"))
    finally:
        for slot in slots:
            slot.__exit__(None, None, None)
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1


async def _settled(plane: Plane) -> None:
    """Wait until the writer has stored and acknowledged everything published so far."""
    deadline = time.monotonic() + 15
    while True:
        info = await plane.context.js.consumer_info("events", "writers")
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        assert time.monotonic() < deadline, "the writer did not settle"
        await asyncio.sleep(0.05)


async def test_count_endpoint_reports_rows_and_exact_events(plane: Plane) -> None:
    await _settled(plane)
    project = plane.projects["a"]
    cheap = await plane.http.get("/v1/events/count", headers=plane.auth("a"))
    exact = await plane.http.get("/v1/events/count", params={"exact": "true"},
                                 headers=plane.auth("a"))
    assert cheap.status_code == 200
    assert cheap.json()["rows"] == plane.store.count_rows(project)
    assert "events" not in cheap.json() or cheap.json()["events"] is None
    assert exact.json()["events"] == plane.store.count_events(project)
    other = await plane.http.get("/v1/events/count", params={"exact": "true"},
                                 headers=plane.auth("b"))
    assert other.json()["events"] == plane.store.count_events(plane.projects["b"])


async def test_deep_backlog_answers_503_with_retry_after_and_accepts_nothing(
    plane: Plane,
) -> None:
    plane.writer.stop()  # no writer: the backlog builds up
    await asyncio.sleep(plane.context.settings.writer_flush_interval_s * 3)
    js = plane.context.js
    for i in range(plane.context.settings.ingest_backlog_limit + 5):
        await js.publish(f"events.spans.{plane.projects['b']}", b"{}",
                         headers={"Nats-Msg-Id": f"backlog-{i}-{time.time_ns()}"})
    deadline = time.monotonic() + 5
    while plane.context.backlog <= plane.context.settings.ingest_backlog_limit:
        assert time.monotonic() < deadline, "the backlog watcher never saw the backlog"
        await asyncio.sleep(0.1)
    stream_before = (await js.stream_info("events")).state.messages
    response = await plane.http.post("/v1/traces", content=_otel_body(1),
                                      headers=plane.auth("a"))
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert (await js.stream_info("events")).state.messages == stream_before


async def test_unknown_route_is_a_json_404(plane: Plane) -> None:
    response = await plane.http.get("/v1/nowhere", headers=plane.auth("a"))
    assert response.status_code == 404
    assert response.json()["errorCode"] == "not_found"



async def test_deeply_nested_json_is_a_400_not_a_500(plane: Plane) -> None:
    body = b'{"filters": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = await plane.http.post("/v1/events/export", content=body,
                                      headers=plane.auth("a", "application/json"))
    assert response.status_code == 400
