"""Prometheus metrics of this process, on a registry of Apiary's own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "apiary_http_requests_total", "HTTP requests answered, by route and status.",
    ["route", "status"], registry=REGISTRY,
)
SPANS_ACCEPTED = Counter(
    "apiary_ingest_spans_accepted_total", "Spans acknowledged to clients (durable in JetStream).",
    registry=REGISTRY,
)
SPANS_REJECTED = Counter(
    "apiary_ingest_spans_rejected_total", "Spans refused in a partial success.",
    registry=REGISTRY,
)
PUBLISH_SECONDS = Histogram(
    "apiary_ingest_publish_seconds", "Time from publish to JetStream acknowledgement.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
INFLIGHT = Gauge(
    "apiary_ingest_inflight_requests", "Ingest requests being processed by this replica.",
    registry=REGISTRY,
)
BACKLOG = Gauge(
    "apiary_events_backlog_messages",
    "Messages on the events stream not yet acknowledged by the writers (last observed).",
    registry=REGISTRY,
)
