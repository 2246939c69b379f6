"""Alert rules as the data plane sees them: read from the federation's config bucket.

The control plane pushes each alert as a config-log entry of kind ``alert_rule``; the
federation's applier (:mod:`apiary.dataplane.federation.apply`) stores it in the key-value
bucket ``federation-config`` under ``alert_rule.<project>.<alert>`` as
``{"version", "project_id", "object"}``, ``object`` being the alert as the control plane's
alerts API returns it (rule and state); a deleted alert's key is deleted. :func:`read_rules`
reads every such entry (a snapshot, taken at each evaluation), :func:`parse_rule` one.

The org and workspace of a project come from the projects this data plane serves
(``projects`` in ``federation-state``, written by the applier from ``project_assigned``):
:func:`served_projects`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError

from apiary.dataplane.replica.federation_state import (
    CONFIG_BUCKET,
    PROJECTS_KEY,
    STATE_BUCKET,
    live_entries,
    read_json,
)

log = logging.getLogger("apiary.dataplane.alerts")

#: The config-log kind (and key prefix in ``federation-config``) of an alert rule.
RULE_KIND = "alert_rule"
#: Fields measured without an aggregation (the control plane's list).
FIELDS = frozenset({"event_count", "error_rate", "latency_p50", "latency_p95", "latency_p99",
                    "cost", "tokens"})
Op = Literal[">", ">=", "<", "<="]
Level = Literal["warning", "critical"]


@dataclass(frozen=True, slots=True)
class Threshold:
    op: Op
    value: float

    def past(self, value: float) -> bool:
        """Whether ``value`` is past this threshold (the alerting side)."""
        if self.op == ">":
            return value > self.value
        if self.op == ">=":
            return value >= self.value
        if self.op == "<":
            return value < self.value
        return value <= self.value

    def as_dict(self) -> dict[str, Any]:
        return {"op": self.op, "value": self.value}


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One alert rule and the control plane's view of its state."""

    alert_id: str
    project_id: str
    name: str
    type: Literal["aggregate", "drift"]
    field: str
    aggregation: Literal["mean", "share_true"] | None
    filters: tuple[dict[str, Any], ...]
    window_s: int
    comparison_window_s: int | None
    direction: Literal["up", "down", "either"] | None
    warning: Threshold | None
    critical: Threshold | None
    min_duration_s: int
    paused: bool
    muted: bool
    #: The control plane's ``evaluation_state`` and ``state_changed_at`` (manual resolve).
    evaluation_state: str | None
    state_changed_at: datetime | None
    #: The config version of the entry.
    version: int
    #: A digest of the condition: a changed condition restarts the duration timers.
    condition_key: str = ""

    def threshold(self, level: Level) -> Threshold | None:
        return self.warning if level == "warning" else self.critical


def _threshold(raw: Any) -> Threshold | None:
    if raw is None:
        return None
    op = str(raw["op"])
    if op not in (">", ">=", "<", "<="):
        raise ValueError(f"unknown threshold op {op!r}")
    return Threshold(op, float(raw["value"]))  # type: ignore[arg-type]


def _when(raw: Any) -> datetime | None:
    if raw is None:
        return None
    value = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_rule(doc: dict[str, Any]) -> AlertRule:
    """The rule of a bucket entry ``{"version", "project_id", "object"}``; ValueError,
    KeyError or TypeError when it is not one."""
    alert = doc["object"]
    if not isinstance(alert, dict):
        raise TypeError("the entry holds no alert object")
    condition = alert["condition"]
    if not isinstance(condition, dict):
        raise TypeError("the alert has no condition object")
    kind = str(condition["type"])
    if kind not in ("aggregate", "drift"):
        raise ValueError(f"unknown condition type {kind!r}")
    measured = str(condition["field"])
    aggregation = condition.get("aggregation")
    if measured not in FIELDS and not measured.startswith(("metrics.", "feedback.")):
        raise ValueError(f"unknown field {measured!r}")
    if measured.startswith(("metrics.", "feedback.")):
        aggregation = aggregation or "mean"
    window_s = int(condition["window_s"])
    if window_s <= 0:
        raise ValueError("window_s must be positive")
    comparison = condition.get("comparison_window_s")
    digest = hashlib.sha256(orjson.dumps(condition, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return AlertRule(
        alert_id=str(alert["id"]), project_id=str(alert.get("project_id")
                                                   or doc["project_id"]),
        name=str(alert.get("name") or alert["id"]), type=kind,  # type: ignore[arg-type]
        field=measured, aggregation=aggregation,
        filters=tuple(dict(f) for f in condition.get("filters") or []),
        window_s=window_s,
        comparison_window_s=(int(comparison) if comparison else window_s)
        if kind == "drift" else None,
        direction=(condition.get("direction") or "either") if kind == "drift" else None,
        warning=_threshold(condition.get("warning")),
        critical=_threshold(condition.get("critical")),
        min_duration_s=int(condition.get("min_duration_s") or 0),
        paused=bool(alert.get("paused")), muted=bool(alert.get("muted")),
        evaluation_state=alert.get("evaluation_state"),
        state_changed_at=_when(alert.get("state_changed_at")),
        version=int(doc.get("version") or 0), condition_key=digest[:32],
    )


async def read_rules(js: JetStreamContext) -> list[AlertRule]:
    """Every alert rule in ``federation-config`` (none when the bucket does not exist yet).
    An entry that cannot be read is logged and skipped, never the others."""
    try:
        kv = await js.key_value(CONFIG_BUCKET)
    except (BucketNotFoundError, NotFoundError):
        return []
    rules: list[AlertRule] = []
    for key, value in await live_entries(kv, f"{RULE_KIND}.>"):
        try:
            rules.append(parse_rule(orjson.loads(value)))
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            log.error("alert rule entry skipped", extra={"key": key, "error": repr(exc)})
    return rules


async def served_projects(js: JetStreamContext) -> dict[str, dict[str, Any]]:
    """The projects this data plane serves: project id → ``{org_id, workspace_id, ...}``
    (the ``project_assigned`` payloads); empty when not federated yet."""
    try:
        kv = await js.key_value(STATE_BUCKET)
    except (BucketNotFoundError, NotFoundError):
        return {}
    doc = await read_json(kv, PROJECTS_KEY) or {}
    projects = doc.get("projects") or {}
    return {str(k): dict(v) for k, v in projects.items() if isinstance(v, dict)} \
        if isinstance(projects, dict) else {}


__all__ = ["FIELDS", "RULE_KIND", "AlertRule", "Level", "Op", "Threshold", "parse_rule",
           "read_rules", "served_projects"]
