"""Prometheus metrics of this process, on a registry of Apiary's own."""

from __future__ import annotations

import sys
from typing import Any

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
INGEST_ROWS = Gauge(
    "apiary_ingest_rows",
    "A project's rows by state (accepted, stored, dead_lettered, in_flight), as the last "
    "ingest accounting this process computed (GET /v1/ingest/stats, apiary status) found them.",
    ["project_id", "state"], registry=REGISTRY,
)

# --- the pipeline's own metrics (writers, evaluators, the store's owner) ----------------------
#
# Recorded through :func:`record` helpers below: each updates this process's registry (served
# by a replica's ``/metrics``, and by any process that serves ``REGISTRY``) and, inside a Ray
# worker, the same metric through ``ray.util.metrics``, which Ray's metrics agent exports
# (with Ray's ``ray_`` prefix) from actors that serve no HTTP. ``docs/grafana/apiary.json``
# charts them.

_FLUSH_ROWS_BUCKETS = (1, 10, 100, 1_000, 5_000, 10_000, 20_000, 50_000, 100_000)
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

CONSUMER_LAG = Gauge(
    "apiary_consumer_lag_messages",
    "Messages a durable consumer has not acknowledged (pending + ack pending), by stream.",
    ["stream"], registry=REGISTRY,
)
FLUSH_ROWS = Histogram(
    "apiary_writer_flush_rows", "Rows in one writer insert.",
    buckets=_FLUSH_ROWS_BUCKETS, registry=REGISTRY,
)
FLUSH_SECONDS = Histogram(
    "apiary_writer_flush_seconds", "Time of one writer insert, retries included.",
    buckets=_SECONDS_BUCKETS, registry=REGISTRY,
)
RETRIES = Counter(
    "apiary_retries_total", "Store calls retried after a transient failure, by stage.",
    ["stage"], registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "apiary_dead_letters_total", "Messages dead-lettered, by stream and reason (error type).",
    ["stream", "reason"], registry=REGISTRY,
)
DEAD_LETTERS_REPLAYED = Counter(
    "apiary_dead_letters_replayed_total", "Dead letters replayed into their stream (apiary dlq, "
    "/v1/admin/dead-letters), by stream and outcome (replayed, already_replayed, deferred).",
    ["stream", "outcome"], registry=REGISTRY,
)
DEAD_LETTERS_PURGED = Counter(
    "apiary_dead_letters_purged_total", "Dead letters removed (replayed or purged), by stream.",
    ["stream"], registry=REGISTRY,
)
EVALUATIONS = Counter(
    "apiary_evaluations_total",
    "Metric evaluations finished, by outcome (scored, failed, no_score, already_scored, "
    "handed_back, ...).",
    ["outcome"], registry=REGISTRY,
)
BREAKERS_OPEN = Gauge(
    "apiary_circuit_breakers_open", "Metrics paused by their circuit breaker (last observed).",
    registry=REGISTRY,
)
LOOP_RESTARTS = Counter(
    "apiary_loop_restarts_total", "Restarts of a supervised loop after an exception, by loop.",
    ["loop"], registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "apiary_notifications_total", "Notification deliveries finished, by channel type and "
    "outcome (delivered, already_done, dead_lettered), and attempts retried (retried).",
    ["channel_type", "outcome"], registry=REGISTRY,
)
NOTIFY_SECONDS = Histogram(
    "apiary_notification_delivery_seconds", "Time from a notification's queueing to its "
    "delivery to one channel, retries included, by channel type.", ["channel_type"],
    buckets=_SECONDS_BUCKETS, registry=REGISTRY,
)
CP_MAIL = Counter(
    "apiary_cp_mail_total", "The control plane's outgoing mail (invitations, email "
    "verification) by kind and outcome: sent, retried (an attempt failed, another follows), "
    "failed (for good, or retried past notify_max_age_s).", ["kind", "outcome"],
    registry=REGISTRY,
)
STORE_CALL_SECONDS = Histogram(
    "apiary_store_owner_call_seconds", "Time the store's owner spent answering one call, by "
    "method.", ["method"], buckets=_SECONDS_BUCKETS, registry=REGISTRY,
)
FEDERATION_CONNECTED = Gauge(
    "apiary_federation_connected", "1 while the data plane's federation stream to the control "
    "plane is up.", registry=REGISTRY,
)
FEDERATION_RECONNECTS = Counter(
    "apiary_federation_reconnects_total", "Federation streams that ended and were dialled "
    "again, by cause (closed, error, refused).", ["cause"], registry=REGISTRY,
)
AUTH_STALE_USES = Counter(
    "apiary_auth_stale_uses_total", "Requests a federated data plane authenticated with an API "
    "key verified earlier, past the auth cache cap, because the control plane was unreachable "
    "(APIARY_AUTH_STALE_MAX_S).", registry=REGISTRY,
)
FEDERATION_APPLIED_VERSION = Gauge(
    "apiary_federation_applied_config_version", "The highest config version the data plane "
    "applied durably.", registry=REGISTRY,
)
CP_FEDERATION_STREAMS = Gauge(
    "apiary_cp_federation_streams", "Data planes' federation streams open on this control "
    "plane's controller.", registry=REGISTRY,
)
CP_FEDERATION_CHANGES = Counter(
    "apiary_cp_federation_changes_sent_total", "Config-log entries written on data planes' "
    "streams (replays included).", registry=REGISTRY,
)
CP_FEDERATION_REFUSED = Counter(
    "apiary_cp_federation_streams_refused_total", "Federation streams refused, by gRPC status "
    "(unauthenticated, invalid_argument, unavailable).", ["code"], registry=REGISTRY,
)
CP_ALERT_ACTIVITY = Counter(
    "apiary_cp_alert_activity_total", "Alert activities data planes reported, by outcome "
    "(stored, duplicate, refused).", ["outcome"], registry=REGISTRY,
)
FEDERATION_ALERT_ACTIVITY = Counter(
    "apiary_federation_alert_activity_total", "Alert activities the data plane sent to the "
    "control plane (sent) and that the control plane acknowledged (acked).", ["outcome"],
    registry=REGISTRY,
)
NOTIFY_ACTIVITY_FAILURES = Counter(
    "apiary_notification_activity_failures_total", "Delivery activities the notifier could "
    "not publish to the alert-activity stream at once (the message is handed back and the "
    "activity published again on its redelivery).", registry=REGISTRY,
)

ALERT_EVALUATIONS = Counter(
    "apiary_alert_evaluations_total", "Alert rules evaluated by the data plane's alert "
    "evaluator, by outcome (evaluated, no_data, failed, skipped_paused).", ["outcome"],
    registry=REGISTRY,
)
ALERT_TRANSITIONS = Counter(
    "apiary_alert_transitions_total", "Alert transitions the evaluator published, by stage "
    "(warning, critical, resolution) and whether the alert was muted.", ["stage", "muted"],
    registry=REGISTRY,
)
ALERT_EVALUATION_SECONDS = Histogram(
    "apiary_alert_evaluation_seconds", "Time to evaluate one alert rule (its ClickHouse "
    "queries, state and publishing), by alert.", ["alert_id"], buckets=_SECONDS_BUCKETS,
    registry=REGISTRY,
)


class _RayMirror:
    """The ``ray.util.metrics`` twin of each metric, made on first use inside a Ray worker."""

    def __init__(self) -> None:
        self._made: dict[str, Any] = {}

    def _ray(self) -> Any:
        ray = sys.modules.get("ray")  # never import Ray only to record a metric
        try:
            if ray is None or not ray.is_initialized():
                return None
        except Exception:  # a partly imported Ray
            return None
        return ray

    def made(self) -> list[str]:
        return list(self._made)

    def get(self, metric: Any, kind: str) -> Any:
        name: str = metric._name
        if name in self._made:
            return self._made[name]
        ray = self._ray()
        if ray is None:
            return None
        from ray.util import metrics as ray_metrics

        labels = tuple(metric._labelnames)
        made: Any
        if kind == "counter":
            made = ray_metrics.Counter(name, metric._documentation, tag_keys=labels)
        elif kind == "gauge":
            made = ray_metrics.Gauge(name, metric._documentation, tag_keys=labels)
        else:
            made = ray_metrics.Histogram(name, metric._documentation,
                                         boundaries=list(metric._upper_bounds[:-1]),
                                         tag_keys=labels)
        self._made[name] = made
        return made


_MIRROR = _RayMirror()


def _record(metric: Any, kind: str, value: float, labels: dict[str, str]) -> None:
    target = metric.labels(**labels) if labels else metric
    if kind == "counter":
        target.inc(value)
    elif kind == "gauge":
        target.set(value)
    else:
        target.observe(value)
    try:
        twin = _MIRROR.get(metric, kind)
        if twin is None:
            return
        tags = labels or None
        if kind == "counter":
            twin.inc(value, tags=tags)
        elif kind == "gauge":
            twin.set(value, tags=tags)
        else:
            twin.observe(value, tags=tags)
    except Exception:  # a metric must never fail the work it measures
        return


def inc(metric: Counter, value: float = 1.0, **labels: str) -> None:
    """Add ``value`` to a counter of this module (and its Ray twin in a Ray worker)."""
    _record(metric, "counter", value, labels)


def set_gauge(metric: Gauge, value: float, **labels: str) -> None:
    """Set a gauge of this module (and its Ray twin in a Ray worker)."""
    _record(metric, "gauge", value, labels)


def observe(metric: Histogram, value: float, **labels: str) -> None:
    """Observe ``value`` in a histogram of this module (and its Ray twin in a Ray worker)."""
    _record(metric, "histogram", value, labels)


def mirrored_to_ray() -> list[str]:
    """The metrics this process has recorded through ``ray.util.metrics`` too (by name)."""
    return sorted(_MIRROR.made())
