"""OTLP/HTTP trace ingestion: ``POST /v1/traces`` and ``POST /opentelemetry/v1/traces``.

The answer follows OTLP/HTTP: 200 with an ``ExportTraceServiceResponse`` in the request's
encoding, whose ``partial_success`` names every rejected span and why; 400 for a body that
does not decode; 401/403 for credentials; 413 above the size limit (before or after
decompression); 415 for an unknown content type or encoding; 429/503 with ``Retry-After``
when the pipeline cannot take more, and 503 with ``Retry-After`` when JetStream cannot
take the spans (at once while the NATS connection is down, else after
``ingest_publish_timeout_s`` without an acknowledgement): never 500, never 200. Errors
carry a ``google.rpc.Status`` for protobuf requests and ``{"code", "message",
"errorCode"}`` JSON otherwise.

**200 means durable**: the events are in JetStream (fsync'ed) before the answer is sent,
and the request is never answered 200 before that. Authorization, admission, decoding,
mapping and publishing are :mod:`.accept`'s, shared with OTLP/gRPC (:mod:`.otlp_grpc`).
A retried identical request is de-duplicated by JetStream (``Nats-Msg-Id`` is a hash of
the tenant and the body).
"""

from __future__ import annotations

import math

from fastapi import APIRouter
from google.rpc import status_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from apiary._private import metrics
from apiary.dataplane.ingest import otlp
from apiary.dataplane.ingest.accept import accept_spans, authorize
from apiary.dataplane.replica.context import context_of
from apiary.errors import ApiaryError, Overloaded
from apiary.web.body import decompress, read_body

router = APIRouter(tags=["ingestion"])

_PROTOBUF = "application/x-protobuf"

# gRPC status codes, as OTLP/HTTP's Status message expects.
_GRPC_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 413: 8, 415: 3, 421: 9, 429: 8, 503: 14}

# Errors come in the request's encoding: google.rpc.Status for protobuf, else JSON.
_OTLP_ERROR = {"content": {
    "application/json": {"schema": {
        "type": "object", "required": ["code", "message", "errorCode"],
        "properties": {"code": {"type": "integer", "description": "gRPC status code"},
                       "message": {"type": "string"}, "errorCode": {"type": "string"},
                       "details": {"type": "object"}}}},
    _PROTOBUF: {"schema": {"type": "string", "format": "binary",
                           "description": "google.rpc.Status"}},
}}
_OTLP_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object",
                                            "description": "OTLP JSON ExportTraceServiceRequest"}},
        },
    },
    "responses": {
        "200": {"description": "Accepted and durable; partial_success names rejected spans.",
                "content": {"application/x-protobuf": {}, "application/json": {}}},
        "400": {**_OTLP_ERROR, "description": "Malformed body"},
        "401": {**_OTLP_ERROR, "description": "Missing or unknown credentials"},
        "403": {**_OTLP_ERROR, "description": "Credentials may not ingest"},
        "413": {**_OTLP_ERROR, "description": "Body too large (before or after decompression)"},
        "421": {**_OTLP_ERROR, "description": "The key's project is served by another data "
                "plane (federation); the message and data_plane_url name it"},
        "415": {**_OTLP_ERROR, "description": "Unsupported Content-Type or Content-Encoding"},
        "429": {**_OTLP_ERROR, "description": "Replica busy; retry after Retry-After seconds"},
        "503": {**_OTLP_ERROR,
                "description": "Pipeline full or queue unavailable; retry after Retry-After"},
    },
}


def _otlp_error(exc: ApiaryError, media: str) -> Response:
    headers = {}
    if isinstance(exc, Overloaded):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    elif exc.retryable and exc.status == 503:  # e.g. JetStream unreachable: come back soon
        headers["Retry-After"] = "1"
    code = _GRPC_CODE.get(exc.status, 2)
    if media == _PROTOBUF:
        body = status_pb2.Status(code=code, message=exc.message).SerializeToString()
        return Response(body, status_code=exc.status, media_type=_PROTOBUF, headers=headers)
    return JSONResponse(
        {"code": code, **exc.to_body()}, status_code=exc.status, headers=headers
    )


@router.post("/v1/traces", openapi_extra=_OTLP_OPENAPI, summary="Export traces (OTLP/HTTP)")
@router.post(
    "/opentelemetry/v1/traces", openapi_extra=_OTLP_OPENAPI,
    summary="Export traces (OTLP/HTTP, HoneyHive SDK path)",
)
async def export_traces(request: Request) -> Response:
    # Errors answer in the request's encoding when it is one we speak, else JSON.
    media = _PROTOBUF if "protobuf" in request.headers.get("content-type", "") else "json"
    route = request.url.path
    try:
        response = await _export(request)
    except ApiaryError as exc:
        metrics.REQUESTS.labels(route, str(exc.status)).inc()
        return _otlp_error(exc, media)
    metrics.REQUESTS.labels(route, "200").inc()
    return response


async def _export(request: Request) -> Response:
    context = context_of(request)
    principal = await authorize(context, request.headers.get("authorization"))
    content_type = request.headers.get("content-type", "")
    otlp.media_type(content_type)  # 415 before the body is read
    limit = context.settings.ingest_max_body_bytes
    with context.admit():
        body = await read_body(request, limit)
        body = decompress(body, request.headers.get("content-encoding"), limit)
        mapped = await accept_spans(context, principal, body, content_type)
        payload, response_type = otlp.encode_response(mapped.rejected, content_type)
    return Response(payload, media_type=response_type)
