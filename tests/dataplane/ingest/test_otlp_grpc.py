"""OTLP/gRPC ingestion (``apiary.dataplane.ingest.otlp_grpc``) over real NATS and real chDB.

The receiver runs in the test's event loop with a real :class:`DataPlaneContext` and a real
writer loop; the OpenTelemetry SDK's gRPC exporter, unmodified, sends to it from a worker
thread (it is synchronous), and raw gRPC calls check each status code, message and
``RetryInfo`` the OTLP specification asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from nats.js.errors import NotFoundError
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from apiary._private import metrics
from apiary.credentials import mint_api_key
from apiary.dataplane.auth import ApiKeyAuthenticator, Permission, Principal, StoredKey
from apiary.dataplane.ingest.otlp import derive_event_id
from apiary.dataplane.ingest.otlp_grpc import EXPORT_METHOD, OtlpGrpcServer
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.dataplane.writer import WriterLoop
from apiary.errors import QueueError
from apiary.objects import LocalObjectStore
from apiary.queue import NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

LIMIT = 256 * 1024


@dataclass
class Receiver:
    endpoint: str
    context: DataPlaneContext
    store: EventStore
    keys: dict[str, str]
    projects: dict[str, str]

    def metadata(self, who: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.keys[who]}"),)


def _key(project: str, *permissions: Permission) -> tuple[str, StoredKey]:
    key = mint_api_key()
    principal = Principal(subject=f"key:{key.key_id}", org_id="org", workspace_id="ws",
                          project_id=project, permissions=frozenset(permissions))
    return key.value, StoredKey(key.key_id, key.secret_hash, principal)


@contextlib.asynccontextmanager
async def _receiver(
    nats_url: str, settings: ApiarySettings, keys: Sequence[StoredKey], store: EventStore
) -> AsyncIterator[tuple[DataPlaneContext, str]]:
    """A replica's context and its gRPC receiver on a free port of 127.0.0.1."""
    context = await DataPlaneContext.open(settings, nats_url, ApiKeyAuthenticator(list(keys)),
                                          store=DirectStoreClient(store))
    server = OtlpGrpcServer(context, "127.0.0.1", 0)
    port = await server.start()
    try:
        yield context, f"127.0.0.1:{port}"
    finally:
        await server.stop(1.0)
        await context.close()


@pytest.fixture(scope="module")
async def receiver(
    nats_server: NatsServer, store: EventStore, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Receiver]:
    data_dir = tmp_path_factory.mktemp("grpc-plane")
    settings = ApiarySettings(data_dir=data_dir, ingest_max_body_bytes=LIMIT,
                              writer_flush_interval_s=0.1)
    nc = await connect(nats_server.url, name="grpc-test-setup")
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, settings)
    project = f"proj-grpc-{time.time_ns()}"
    writer_key, stored_w = _key(project, Permission.EVENTS_WRITE, Permission.EVENTS_READ)
    reader_key, stored_r = _key(project, Permission.EVENTS_READ)
    client = DirectStoreClient(store)
    writer = WriterLoop(js=js, store=client, objects=LocalObjectStore(data_dir / "objects"),
                        settings=settings, name="grpc-test-writer")
    task = asyncio.create_task(writer.run())
    async with _receiver(nats_server.url, settings, [stored_w, stored_r], store) as (
            context, endpoint):
        yield Receiver(endpoint, context, store, {"writer": writer_key, "reader": reader_key},
                       {"a": project})
    writer.stop()
    await task
    await nc.close()


def _sdk_spans(n: int, name: str) -> list[ReadableSpan]:
    """``n`` finished spans of one trace made by the OpenTelemetry SDK."""
    collected = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "grpc-test"}))
    provider.add_span_processor(SimpleSpanProcessor(collected))
    tracer = provider.get_tracer("apiary-tests")
    with tracer.start_as_current_span(f"{name}-root"):
        for i in range(n - 1):
            with tracer.start_as_current_span(f"{name}-{i}") as span:
                span.set_attribute("gen_ai.request.model", "gpt-4o")
    provider.shutdown()
    return list(collected.get_finished_spans())


def _sdk_export(endpoint: str, spans: list[ReadableSpan], key: str | None, *,
                gzip: bool = False, timeout: float = 10.0) -> SpanExportResult:
    """The unmodified OTLP/gRPC exporter, configured as a user would."""
    exporter = OTLPSpanExporter(
        endpoint=f"http://{endpoint}", insecure=True, timeout=timeout,
        headers={"authorization": f"Bearer {key}"} if key else None,
        compression=grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression,
    )
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


async def _stored(receiver: Receiver, spans: list[ReadableSpan],
                  wait_s: float = 20.0) -> list[dict[str, object]]:
    """The stored events of ``spans``, once all are stored (or what is after ``wait_s``)."""
    ids = [derive_event_id(f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}")
           for s in spans]
    deadline = time.monotonic() + wait_s
    while True:
        found = receiver.store.latest_events(receiver.projects["a"], ids)
        if len(found) >= len(ids) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


def _request_body(n: int = 2, *, bad_span: bool = False, pad: int = 0) -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    trace_id = time.time_ns().to_bytes(16, "big")
    for i in range(n):
        span = scope.spans.add(trace_id=trace_id, span_id=(i + 1).to_bytes(8, "big"),
                               name=f"raw-{i}", start_time_unix_nano=time.time_ns(),
                               end_time_unix_nano=time.time_ns() + 1000)
        if pad:
            span.attributes.add(key="padding").value.string_value = "x" * pad
    if bad_span:
        scope.spans.add(trace_id=trace_id, span_id=b"\x01\x02\x03", name="broken")
    return request.SerializeToString()


async def _call(endpoint: str, body: bytes, metadata: Sequence[tuple[str, str]] = (), *,
                compression: grpc.Compression | None = None) -> bytes:
    async with grpc.aio.insecure_channel(endpoint, options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024)]) as channel:
        export = channel.unary_unary(EXPORT_METHOD)
        reply: bytes = await export(body, metadata=tuple(metadata), timeout=10,
                                    compression=compression)
        return reply


async def _refusal(endpoint: str, body: bytes, metadata: Sequence[tuple[str, str]] = (), *,
                   compression: grpc.Compression | None = None) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _call(endpoint, body, metadata, compression=compression)
    return caught.value


def _retry_delay(error: grpc.aio.AioRpcError) -> float | None:
    """The RetryInfo delay of ``error``, checked to be the same in both places it travels."""
    trailers = dict(error.trailing_metadata() or ())
    if "google.rpc.retryinfo-bin" not in trailers:
        return None
    info = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    packed = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(packed)
    assert packed == info
    assert status.code == error.code().value[0]
    return info.retry_delay.seconds + info.retry_delay.nanos / 1e9


def _refusals(code: grpc.StatusCode) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "apiary_http_requests_total", {"route": EXPORT_METHOD, "status": code.name})
    return value or 0.0


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
async def test_sdk_grpc_exporter_spans_are_stored(receiver: Receiver, gzip: bool) -> None:
    spans = _sdk_spans(3, f"sdk-{'gzip' if gzip else 'plain'}")
    result = await asyncio.to_thread(_sdk_export, receiver.endpoint, spans,
                                     receiver.keys["writer"], gzip=gzip)
    assert result is SpanExportResult.SUCCESS
    stored = await _stored(receiver, spans)
    assert sorted(str(e["event_name"]) for e in stored) == sorted(s.name for s in spans)


async def test_ok_means_durable_in_jetstream_before_the_answer(receiver: Receiver) -> None:
    before = (await receiver.context.js.stream_info("events")).state.last_seq
    reply = await _call(receiver.endpoint, _request_body(2), receiver.metadata("writer"))
    assert ExportTraceServiceResponse.FromString(reply).partial_success.rejected_spans == 0
    # Answered: the message is already in the stream (no waiting here).
    assert (await receiver.context.js.stream_info("events")).state.last_seq == before + 1


async def test_partial_success_names_the_rejected_span(receiver: Receiver) -> None:
    reply = await _call(receiver.endpoint, _request_body(2, bad_span=True),
                        receiver.metadata("writer"))
    response = ExportTraceServiceResponse.FromString(reply)
    assert response.partial_success.rejected_spans == 1
    assert "010203" in response.partial_success.error_message


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer hh_ingst_nope_nope_x"),),
                                      (("authorization", "Basic abc"),)],
                         ids=["missing", "unknown", "not-bearer"])
async def test_missing_or_wrong_key_is_unauthenticated_and_nothing_is_stored(
    receiver: Receiver, metadata: tuple[tuple[str, str], ...],
) -> None:
    before = (await receiver.context.js.stream_info("events")).state.last_seq
    error = await _refusal(receiver.endpoint, _request_body(1), metadata)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error.details()
    assert _retry_delay(error) is None
    assert (await receiver.context.js.stream_info("events")).state.last_seq == before


async def test_sdk_exporter_with_a_wrong_key_fails_without_storing(receiver: Receiver) -> None:
    spans = _sdk_spans(1, "wrong-key")
    refused = _refusals(grpc.StatusCode.UNAUTHENTICATED)
    result = await asyncio.to_thread(_sdk_export, receiver.endpoint, spans, "hh_ingst_x_y_z")
    assert result is SpanExportResult.FAILURE
    # Not retried: UNAUTHENTICATED is not a retryable code.
    assert _refusals(grpc.StatusCode.UNAUTHENTICATED) == refused + 1
    assert await _stored(receiver, spans, wait_s=0.5) == []


async def test_key_without_events_write_is_permission_denied(receiver: Receiver) -> None:
    error = await _refusal(receiver.endpoint, _request_body(1), receiver.metadata("reader"))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "may not events write" in (error.details() or "")


async def test_malformed_payload_is_invalid_argument(receiver: Receiver) -> None:
    error = await _refusal(receiver.endpoint, b"\x0a\xff\xff\xff\xff\x0f garbage",
                           receiver.metadata("writer"))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details()
    assert _retry_delay(error) is None


async def test_message_above_the_limit_is_invalid_argument_naming_the_limit(
    receiver: Receiver,
) -> None:
    body = _request_body(1, pad=LIMIT + 1024)
    assert LIMIT < len(body) < 2 * LIMIT
    error = await _refusal(receiver.endpoint, body, receiver.metadata("writer"))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"limit of {LIMIT} bytes" in (error.details() or "")


async def test_gzip_bomb_is_refused_by_size_after_decompression(receiver: Receiver) -> None:
    body = _request_body(1, pad=LIMIT * 8)
    error = await _refusal(receiver.endpoint, body, receiver.metadata("writer"),
                           compression=grpc.Compression.Gzip)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (error.details() or "")


async def test_replica_at_its_inflight_limit_is_unavailable_with_retry_info(
    receiver: Receiver,
) -> None:
    context = receiver.context
    slots = [context.admit() for _ in range(context.settings.ingest_max_inflight)]
    for slot in slots:
        slot.__enter__()
    try:
        error = await _refusal(receiver.endpoint, _request_body(1), receiver.metadata("writer"))
    finally:
        for slot in slots:
            slot.__exit__(None, None, None)
    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert _retry_delay(error) == 1.0


async def test_sdk_exporter_retries_an_overloaded_replica_and_is_stored(
    receiver: Receiver,
) -> None:
    """The exporter, refused with UNAVAILABLE + RetryInfo, retries after the delay."""
    context = receiver.context
    slots = [context.admit() for _ in range(context.settings.ingest_max_inflight)]
    for slot in slots:
        slot.__enter__()
    refused = _refusals(grpc.StatusCode.UNAVAILABLE)
    spans = _sdk_spans(2, "retried")
    export = asyncio.create_task(asyncio.to_thread(
        _sdk_export, receiver.endpoint, spans, receiver.keys["writer"], timeout=20.0))
    try:
        deadline = time.monotonic() + 10
        while _refusals(grpc.StatusCode.UNAVAILABLE) == refused:
            assert time.monotonic() < deadline, "the exporter never reached the replica"
            await asyncio.sleep(0.02)
    finally:
        for slot in slots:
            slot.__exit__(None, None, None)
    assert await export is SpanExportResult.SUCCESS
    assert len(await _stored(receiver, spans)) == 2


async def test_rate_limited_key_is_resource_exhausted_with_retry_info(
    nats_server: NatsServer, store: EventStore, tmp_path: os.PathLike[str],
) -> None:
    settings = ApiarySettings(data_dir=tmp_path, ingest_rate_limit_per_s=0.01,
                              ingest_rate_limit_burst=1)
    key, stored_key = _key(f"proj-rl-{time.time_ns()}", Permission.EVENTS_WRITE)
    metadata = (("authorization", f"Bearer {key}"),)
    async with _receiver(nats_server.url, settings, [stored_key], store) as (_, endpoint):
        await _call(endpoint, _request_body(1), metadata)
        error = await _refusal(endpoint, _request_body(1), metadata)
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    delay = _retry_delay(error)
    assert delay is not None
    assert delay > 1


async def test_nats_unavailable_is_unavailable_with_retry_info(
    store: EventStore, tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A nats-server killed (``kill -9``) under the replica: exports are refused with a
    retryable code, never answered OK."""
    nats = NatsServer(tmp_path_factory.mktemp("grpc-nats"))
    url = nats.start()
    settings = ApiarySettings(data_dir=tmp_path_factory.mktemp("grpc-nats-plane"),
                              ingest_publish_timeout_s=2.0)
    key, stored_key = _key(f"proj-nats-{time.time_ns()}", Permission.EVENTS_WRITE)
    metadata = (("authorization", f"Bearer {key}"),)
    try:
        nc = await connect(url, name="grpc-nats-setup")
        await ensure_topology(nc.jetstream(), settings)
        await nc.close()
        async with _receiver(url, settings, [stored_key], store) as (context, endpoint):
            await _call(endpoint, _request_body(1), metadata)  # served while NATS is up
            assert nats.pid is not None
            os.kill(nats.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while context.nc.is_connected:
                assert time.monotonic() < deadline, "the replica never saw NATS go"
                await asyncio.sleep(0.02)
            error = await _refusal(endpoint, _request_body(1), metadata)
            assert error.code() is grpc.StatusCode.UNAVAILABLE
            assert _retry_delay(error) is not None
            nats.restart()  # and the retry the exporter would make is then accepted
            while not context.nc.is_connected:
                assert time.monotonic() < deadline + 20, "the replica never reconnected"
                await asyncio.sleep(0.05)
            reply = await _call(endpoint, _request_body(1), metadata)
            assert ExportTraceServiceResponse.FromString(reply).partial_success.rejected_spans == 0
    finally:
        nats.stop()


def test_every_retryable_error_maps_to_a_retryable_code() -> None:
    from apiary.dataplane.ingest.otlp_grpc import status_for

    code, delay = status_for(QueueError("JetStream did not acknowledge"))
    assert code is grpc.StatusCode.UNAVAILABLE
    assert delay == 1.0


async def test_replicas_on_one_host_share_the_port(
    receiver: Receiver, nats_server: NatsServer, store: EventStore, tmp_path: os.PathLike[str],
) -> None:
    """A second replica binds the same port (SO_REUSEPORT) without disturbing the first."""
    port = int(receiver.endpoint.rsplit(":", 1)[1])
    settings = ApiarySettings(data_dir=tmp_path)
    _, stored_key = _key(f"proj-second-{time.time_ns()}", Permission.EVENTS_WRITE)
    context = await DataPlaneContext.open(settings, nats_server.url,
                                          ApiKeyAuthenticator([stored_key]),
                                          store=DirectStoreClient(store))
    second = OtlpGrpcServer(context, "127.0.0.1", port)
    try:
        assert await second.start() == port
    finally:
        await second.stop(1.0)
        await context.close()
    # The first replica still answers on the port once the second has gone.
    reply = await _call(receiver.endpoint, _request_body(1), receiver.metadata("writer"))
    assert ExportTraceServiceResponse.FromString(reply).partial_success.rejected_spans == 0


async def test_a_port_held_by_another_process_is_a_configuration_error(
    receiver: Receiver,
) -> None:
    import socket

    from apiary.errors import ConfigurationError

    with socket.socket() as held:  # no SO_REUSEPORT: nobody may share it
        held.bind(("127.0.0.1", 0))
        held.listen()
        server = OtlpGrpcServer(receiver.context, "127.0.0.1", held.getsockname()[1])
        with pytest.raises(ConfigurationError, match="APIARY_OTLP_GRPC_PORT"):
            await server.start()
        await server.stop(0)
