"""OTLP/gRPC trace ingestion: ``opentelemetry.proto.collector.trace.v1.TraceService/Export``.

A ``grpc.aio`` server that each data-plane replica runs in its own event loop, beside its
HTTP app, on ``otlp_grpc_port`` (0: none). It takes what an unmodified OpenTelemetry gRPC
exporter sends: the ``authorization`` metadata (``Bearer <api key>``, exactly as OTLP/HTTP's
header), gzip compression (``grpc-encoding: gzip``, undone by gRPC itself), and answers an
``ExportTraceServiceResponse`` whose ``partial_success`` names every rejected span.

**OK means durable.** The request goes through the same path as OTLP/HTTP
(:mod:`.accept`: authenticate, ``events:write``, the credential's rate limit, a replica
ingest slot, then decode → map → publish), and OK is answered only once JetStream
acknowledged the message (fsync'ed). The raw request bytes reach that path undecoded (no
deserializer: the OTLP/HTTP protobuf decoder parses them), so both transports store the
same events for the same spans, and an identical retried request has the same
``Nats-Msg-Id`` (JetStream drops the copy).

Errors follow the OTLP specification's gRPC codes; an OTel exporter retries only the
retryable ones:

=========================================  ==============================================
cause                                      status
=========================================  ==============================================
missing, malformed or unknown credential   ``UNAUTHENTICATED``
credential without ``events:write``        ``PERMISSION_DENIED``
a key of a project another data plane      ``FAILED_PRECONDITION`` naming that data
serves (the control plane's 421)           plane's URL (not retried)
body that does not decode, too many spans  ``INVALID_ARGUMENT`` (not retried)
message above ``ingest_max_body_bytes``    ``INVALID_ARGUMENT`` naming the size and limit;
(after decompression)                      beyond twice the limit gRPC itself refuses it
                                           with ``RESOURCE_EXHAUSTED`` ("Received message
                                           larger than max") before it is read whole
the credential's rate limit                ``RESOURCE_EXHAUSTED`` with ``RetryInfo``
replica busy, writers behind, JetStream    ``UNAVAILABLE`` with ``RetryInfo`` (OTLP's
unreachable or not acknowledging           back-pressure signal)
anything unexpected                        ``INTERNAL`` (logged)
=========================================  ==============================================

``RetryInfo`` travels both as ``google.rpc.retryinfo-bin`` (read by OTel Python) and inside
the ``google.rpc.Status`` of ``grpc-status-details-bin`` (read by OTel Go and Java).

**Where it runs, and why there.** Ray Serve's gRPC proxy would need compiled servicer stubs
registered at ``serve.start`` and adds a proxy hop and a Ray call per request; a server in
the replica uses the replica's own :class:`DataPlaneContext` (its NATS connection, its
authenticator, its admission state), so gRPC requests count against the same in-flight
limit as HTTP ones, and no code is generated: the handler is a generic one
(``grpc.method_handlers_generic_handler``) over bytes. Every replica on a host binds the
same port with ``SO_REUSEPORT`` (gRPC's default on Linux), so the kernel spreads new
connections over them and a replica that stops takes only its own connections away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from apiary._private import metrics
from apiary.dataplane.ingest import otlp
from apiary.dataplane.ingest.accept import accept_spans, authorize
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.errors import (
    ApiaryError,
    AuthenticationFailed,
    ConfigurationError,
    MisdirectedRequest,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    RequestError,
)

__all__ = ["EXPORT_METHOD", "SERVICE", "OtlpGrpcServer", "status_for"]

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
EXPORT_METHOD = f"/{SERVICE}/Export"
_PROTOBUF = "application/x-protobuf"
log = logging.getLogger("apiary.api")


def status_for(exc: ApiaryError) -> tuple[grpc.StatusCode, float | None]:
    """The gRPC status of an ingest error, and the delay to retry after (``None``: the
    exporter must not retry)."""
    if isinstance(exc, AuthenticationFailed):
        return grpc.StatusCode.UNAUTHENTICATED, None
    if isinstance(exc, PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED, None
    if isinstance(exc, MisdirectedRequest):  # another data plane serves the project
        return grpc.StatusCode.FAILED_PRECONDITION, None
    if isinstance(exc, RequestError):
        return grpc.StatusCode.INVALID_ARGUMENT, None
    if isinstance(exc, RateLimited):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, max(exc.retry_after, 0.001)
    if isinstance(exc, Overloaded):
        return grpc.StatusCode.UNAVAILABLE, max(exc.retry_after, 0.001)
    if exc.retryable:  # JetStream unreachable, the control plane unreachable for auth
        return grpc.StatusCode.UNAVAILABLE, 1.0
    return grpc.StatusCode.INTERNAL, None


def _trailers(code: grpc.StatusCode, message: str,
              retry_after: float | None) -> tuple[tuple[str, bytes], ...]:
    if retry_after is None:
        return ()
    seconds = int(retry_after)
    delay = duration_pb2.Duration(seconds=seconds, nanos=int((retry_after - seconds) * 1e9))
    info = error_details_pb2.RetryInfo(retry_delay=delay)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return (("google.rpc.retryinfo-bin", info.SerializeToString()),
            ("grpc-status-details-bin", status.SerializeToString()))


def _message(exc: ApiaryError) -> str:
    """The status message: the error's, naming the right data plane's URL for a 421."""
    if isinstance(exc, MisdirectedRequest) and exc.data_plane_url \
            and exc.data_plane_url not in exc.message:
        return f"{exc.message} (send it to {exc.data_plane_url})"
    return exc.message


def _authorization(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            return value.decode("latin-1") if isinstance(value, bytes) else value
    return None


class OtlpGrpcServer:
    """The ``TraceService`` of one replica, serving with ``context`` (see the module doc).

    :meth:`start` binds ``host:port`` (port 0: a free one) and returns the port;
    :meth:`stop` stops taking calls and lets those in flight finish within ``grace``.
    """

    def __init__(self, context: DataPlaneContext, host: str, port: int) -> None:
        self._context = context
        self._address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        limit = context.settings.ingest_max_body_bytes
        self._server = grpc.aio.server(options=[
            # Our own check below answers INVALID_ARGUMENT with the limit; gRPC refuses
            # what is far beyond it before holding it whole.
            ("grpc.max_receive_message_length", 2 * limit),
            ("grpc.so_reuseport", 1),
        ])
        handler = grpc.unary_unary_rpc_method_handler(self._export)  # bytes in, bytes out
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),))
        self.port = 0

    async def start(self) -> int:
        try:
            self.port = self._server.add_insecure_port(self._address)
        except RuntimeError as exc:  # grpc raises RuntimeError when it cannot bind
            raise ConfigurationError(
                f"the OTLP/gRPC receiver cannot listen on {self._address}: {exc}; choose "
                "another port with APIARY_OTLP_GRPC_PORT (0 turns it off)",
                field="otlp_grpc_port") from exc
        await self._server.start()
        log.info("OTLP/gRPC receiver listening", extra={"address": self._address,
                                                         "port": self.port})
        return self.port

    async def stop(self, grace: float = 5.0) -> None:
        await self._server.stop(grace)

    async def _export(self, body: bytes, rpc: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        try:
            payload = await self._accept(body, rpc)
        except ApiaryError as exc:
            code, retry_after = status_for(exc)
            message = _message(exc)
            metrics.REQUESTS.labels(EXPORT_METHOD, code.name).inc()
            log.info("OTLP/gRPC export refused", extra={
                "code": code.name, "error": message, "retryable": retry_after is not None})
            await rpc.abort(code, message, _trailers(code, message, retry_after))
        except Exception as exc:
            metrics.REQUESTS.labels(EXPORT_METHOD, grpc.StatusCode.INTERNAL.name).inc()
            log.exception("OTLP/gRPC export failed", extra={"error": repr(exc)})
            await rpc.abort(grpc.StatusCode.INTERNAL, "internal error; see the data plane's log")
        metrics.REQUESTS.labels(EXPORT_METHOD, grpc.StatusCode.OK.name).inc()
        return payload

    async def _accept(self, body: bytes, rpc: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        context = self._context
        principal = await authorize(context, _authorization(rpc.invocation_metadata()))
        limit = context.settings.ingest_max_body_bytes
        if len(body) > limit:
            raise PayloadTooLarge(
                f"the export request is {len(body)} bytes (after decompression), above the "
                f"limit of {limit} bytes; export smaller batches", size=len(body), limit=limit)
        started = time.perf_counter()
        with context.admit():
            mapped = await accept_spans(context, principal, body, _PROTOBUF)
            payload, _ = otlp.encode_response(mapped.rejected, _PROTOBUF)
        log.debug("OTLP/gRPC export accepted", extra={
            "spans": len(mapped.events), "rejected": len(mapped.rejected),
            "seconds": time.perf_counter() - started})
        return payload
