"""The federation test's harness: three planes (``bench/_planes.py`` starts and stops each
as an ``apiary up`` process) and the clients the test drives them with.

- :func:`send_otel_http` / :func:`send_otel_grpc`: the OpenTelemetry SDK's OTLP exporters,
  unmodified, exporting spans the SDK made (the export's result is returned, so a refusal
  is seen as the exporter sees it);
- :func:`export_grpc_raw`: the same request as a raw gRPC call, for the status code and
  message an exporter only logs;
- :func:`run_honeyhive_sdk`: the HoneyHive SDK, unmodified, in a process of its own
  (``tests/ui/_story_sdk.py trace``: a traced session);
- :func:`identity_jwt`: an identity JWT as a data plane signs it (ES256, ``kid`` the key's
  thumbprint), with any key: a forged data plane is a fresh key and a registered id;
- :func:`connect_stream`: opens the federation stream with a JWT and a Hello, returning the
  gRPC status the control plane ends it with (or ``None`` when it is accepted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench._planes import (  # noqa: F401 - re-exported for the test
    ControlPlaneAdmin,
    Plane,
    control_plane,
    data_plane,
    free_port,
    start_all,
    until,
)

SDK_USER = Path(__file__).resolve().parents[1] / "ui" / "_story_sdk.py"
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def sdk_spans(session_id: str, name: str, n: int = 2) -> list[ReadableSpan]:
    """``n`` finished spans of one trace, made by the OpenTelemetry SDK, in ``session_id``."""
    collected = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "federation-test"}))
    provider.add_span_processor(SimpleSpanProcessor(collected))
    tracer = provider.get_tracer("apiary-federation-test")
    with tracer.start_as_current_span(f"{name}-root") as root:
        root.set_attribute("honeyhive.session_id", session_id)
        for i in range(n - 1):
            with tracer.start_as_current_span(f"{name}-{i}") as child:
                child.set_attribute("honeyhive.session_id", session_id)
    provider.shutdown()
    return list(collected.get_finished_spans())


def send_otel_http(url: str, key: str, session_id: str, name: str) -> SpanExportResult:
    exporter = HttpSpanExporter(endpoint=f"{url}/v1/traces", timeout=30,
                                headers={"authorization": f"Bearer {key}"})
    try:
        return exporter.export(sdk_spans(session_id, name))
    finally:
        exporter.shutdown()


def send_otel_grpc(endpoint: str, key: str, session_id: str, name: str) -> SpanExportResult:
    exporter = GrpcSpanExporter(endpoint=f"http://{endpoint}", insecure=True, timeout=30,
                                headers={"authorization": f"Bearer {key}"},
                                compression=grpc.Compression.Gzip)
    try:
        return exporter.export(sdk_spans(session_id, name))
    finally:
        exporter.shutdown()


def export_grpc_raw(endpoint: str, key: str, session_id: str) -> grpc.RpcError | None:
    """One OTLP/gRPC Export of SDK spans; the error it ended with, ``None`` when OK."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    request: ExportTraceServiceRequest = encode_spans(sdk_spans(session_id, "raw"))
    with grpc.insecure_channel(endpoint) as channel:
        call = channel.unary_unary(EXPORT_METHOD,
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=lambda b: b)
        try:
            call(request, metadata=(("authorization", f"Bearer {key}"),), timeout=30)
        except grpc.RpcError as exc:
            return exc
    return None


def run_honeyhive_sdk(url: str, key: str, session_name: str, work: Path) -> str:
    """A traced session sent by the unmodified HoneyHive SDK; its session id."""
    env = {**os.environ, "HH_API_URL": url, "HH_API_KEY": key,
           "STORY_SESSION_NAME": session_name,
           "STORY_QUESTION": f"Which data plane keeps {session_name}?"}
    out, err = work / f"{session_name}.out", work / f"{session_name}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen([sys.executable, str(SDK_USER), "trace"], cwd=work,
                                   env=env, stdout=stdout, stderr=stderr)
        try:
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert code == 0, f"HoneyHive SDK: {err.read_text()[-3000:]}"
    report: dict[str, Any] = json.loads(out.read_text().splitlines()[-1])
    return str(report["session_id"])


def session_events(url: str, key: str, session_id: str) -> httpx.Response:
    """The data plane's export of one session (``POST /v1/events/export``)."""
    return httpx.post(f"{url}/v1/events/export", timeout=30,
                      headers={"authorization": f"Bearer {key}"},
                      json={"filters": [{"field": "session_id", "operator": "is",
                                         "value": session_id, "type": "string"}],
                            "limit": 100})


def stored(url: str, key: str, session_id: str, count: int, timeout: float = 60.0
           ) -> list[dict[str, Any]]:
    """The session's events once at least ``count`` are stored on that data plane."""
    def found() -> list[dict[str, Any]] | None:
        response = session_events(url, key, session_id)
        assert response.status_code == 200, (response.status_code, response.text)
        events: list[dict[str, Any]] = response.json()["events"]
        return events if len(events) >= count else None
    return until(f"{count} event(s) of {session_id} on {url}", found, timeout, 0.25)


def send_events(url: str, key: str, events: list[dict[str, Any]]) -> list[str]:
    """``POST /v1/events/batch``; the ids (answered 200 means durable)."""
    response = httpx.post(f"{url}/v1/events/batch", json={"events": events}, timeout=30,
                          headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200, (response.status_code, response.text)
    return list(response.json()["event_ids"])


def model_event(content: str) -> dict[str, Any]:
    return {"event_type": "model", "event_name": "llm_call", "event_id": str(uuid.uuid4()),
            "session_id": str(uuid.uuid4()), "inputs": {"question": "where?"},
            "outputs": {"content": content}}


def scores(url: str, key: str, event_id: str) -> dict[str, Any]:
    """The event's ``metrics`` (``{}`` until it is stored)."""
    response = httpx.get(f"{url}/v1/events/{event_id}", timeout=30,
                         headers={"authorization": f"Bearer {key}"})
    if response.status_code != 200:
        return {}
    metrics: dict[str, Any] = response.json()["event"].get("metrics") or {}
    return metrics


def scored(url: str, key: str, event_id: str, metric: str, timeout: float = 60.0) -> Any:
    """The event's score for ``metric`` once it has one."""
    return until(f"{metric} on {event_id}",
                 lambda: scores(url, key, event_id).get(metric), timeout, 0.25)


def identity_jwt(key: ec.EllipticCurvePrivateKey, dp_id: str, issuer: str,
                 lifetime_s: float = 60.0) -> str:
    """An identity JWT for ``dp_id`` signed by ``key`` (as a data plane signs its own)."""
    from apiary.dataplane.federation.identity import public_jwk, thumbprint

    now = int(time.time())
    claims = {"iss": dp_id, "sub": dp_id, "aud": issuer, "iat": now,
              "exp": now + int(lifetime_s), "jti": uuid.uuid4().hex}
    return jwt.encode(claims, key, algorithm="ES256",
                      headers={"kid": thumbprint(public_jwk(key))})


def connect_stream(federation_endpoint: str, token: str, dp_id: str,
                   timeout: float = 15.0) -> grpc.StatusCode | None:
    """Open ``Federation/Connect`` with ``token`` and a Hello: the status code the control
    plane ends the stream with, or ``None`` when it answers with a Welcome."""
    from apiary.federation_wire import pb2, pb2_grpc

    messages = pb2()
    hello = messages.DataPlaneMessage(hello=messages.Hello(data_plane_id=dp_id,
                                                           apiary_version="test"))
    with grpc.insecure_channel(federation_endpoint) as channel:
        stub = pb2_grpc().FederationStub(channel)
        answers = stub.Connect(iter([hello]), timeout=timeout,
                               metadata=(("authorization", f"Bearer {token}"),))
        try:
            first = next(answers)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            return code
        finally:
            answers.cancel()
    assert first.HasField("welcome"), first
    return None
