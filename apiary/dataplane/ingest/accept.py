"""The one ingest path of both OTLP transports: authorize, then decode → map → publish.

:mod:`.routes` (OTLP/HTTP) and :mod:`.otlp_grpc` (OTLP/gRPC) differ only in how a body
reaches them and how the answer is framed; everything between is here, so that both
admit, map and acknowledge exactly alike:

- :func:`authorize`: the ``Authorization: Bearer <api key or token>`` credential is
  authenticated by the replica's authenticator, must hold ``events:write``, and is charged
  to its rate limit (:class:`~apiary.errors.AuthenticationFailed`,
  :class:`~apiary.errors.PermissionDenied`, :class:`~apiary.errors.RateLimited`).
- :func:`accept_spans`: called while holding a replica ingest slot
  (``DataPlaneContext.admit()``), decodes an OTLP ``ExportTraceServiceRequest`` body,
  maps its spans to events, enriches them, and publishes them as one message to JetStream.
  **When it returns, the accepted spans are durable** (JetStream acknowledged the message,
  fsync'ed); it raises instead (:class:`~apiary.errors.QueueError`, 503) when JetStream
  did not acknowledge in time. Nothing is retried here: the exporter retries, and a
  retried identical body is dropped by JetStream's duplicate window (``Nats-Msg-Id`` is a
  hash of the body and the project). Spans that cannot be kept are returned in
  ``MappedSpans.rejected`` (OTLP partial success), never a failed request.
"""

from __future__ import annotations

import hashlib
import time

import orjson
import pyarrow as pa

from apiary._private import metrics
from apiary.dataplane.auth import Permission, Principal, bearer_credential
from apiary.dataplane.ingest import otlp
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.event import SPANS_KIND, Tenant
from apiary.queue import TableBatch
from apiary.ratelimit import admit
from apiary.store import events_to_arrow

__all__ = ["accept_spans", "authorize"]


async def authorize(context: DataPlaneContext, authorization: str | None) -> Principal:
    """The principal of an ``authorization`` value allowed to ingest, charged to its
    rate limit."""
    principal = await context.authenticator.authenticate(bearer_credential(authorization))
    principal.require(Permission.EVENTS_WRITE)
    await admit(context.ingest_limiter, principal.subject)
    return principal


def _rows(tenant: Tenant, version: int, mapped: otlp.MappedSpans) -> pa.Table | None:
    """The spans' ``events`` rows; a span whose values cannot be stored (e.g. an integer
    beyond 64 bits) is moved to ``mapped.rejected`` instead of failing the request."""
    try:
        return events_to_arrow(tenant, version, mapped.events)
    except (orjson.JSONEncodeError, TypeError, ValueError, OverflowError, pa.ArrowException):
        pass
    kept = []
    for event in mapped.events:
        try:
            events_to_arrow(tenant, version, [event])
        except (orjson.JSONEncodeError, TypeError, ValueError, OverflowError,
                pa.ArrowException) as exc:
            mapped.rejected.append(otlp.RejectedSpan(
                event["trace_id"], event["span_id"], f"value cannot be stored: {exc}"))
        else:
            kept.append(event)
    mapped.events[:] = kept
    return events_to_arrow(tenant, version, kept) if kept else None


async def accept_spans(
    context: DataPlaneContext, principal: Principal, body: bytes, content_type: str
) -> otlp.MappedSpans:
    """Decode ``body`` (decompressed, within the size limit), map its spans and publish
    them; durable when this returns (see the module doc). Raises what
    :func:`otlp.map_request` raises for a body that does not decode (400/413/415) and
    what the publisher raises when JetStream does not acknowledge (503)."""
    mapped = otlp.map_request(body, content_type)
    if mapped.events:
        tenant: Tenant = {
            "org_id": principal.org_id,
            "workspace_id": principal.workspace_id,
            "project_id": principal.project_id,
        }
        resolved = context.enricher.enrich_request(tenant["project_id"], mapped.events)
        version = time.time_ns()
        table = _rows(tenant, version, mapped)
        digest = hashlib.blake2b(body, digest_size=16, person=b"apiary-otlp-v1")
        digest.update(principal.project_id.encode())
        if table is not None:
            started = time.perf_counter()
            await context.publisher.publish_table(
                TableBatch(SPANS_KIND, tenant, version, table, frozenset(resolved)),
                msg_id=digest.hexdigest(),
            )
            metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
            metrics.SPANS_ACCEPTED.inc(table.num_rows)
    if mapped.rejected:
        metrics.SPANS_REJECTED.inc(len(mapped.rejected))
    return mapped
