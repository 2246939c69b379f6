"""cpdb: alert rules — aggregate and drift conditions with warning and critical thresholds;
the state (paused and muted, set by the control plane; triggered/resolved and the stage,
reported by the data plane).

Revision ID: 0006
Revises: 0005

``enabled`` becomes ``paused`` (its negation). Every stored condition of the first shape
(``metric``, ``aggregation``, ``operator``, ``threshold``, ``window_s``, ``filters``) is
rewritten to the rule shape, so every stored alert stays readable:

- the measured ``field``: ``count`` → ``event_count``; ``latency``/``duration`` with
  ``p50|p95|p99`` → ``latency_p50|p95|p99``; ``cost``, ``tokens``/``total_tokens``,
  ``error_rate``, ``event_count`` as themselves; ``metrics.<n>``/``feedback.<n>`` as
  themselves; any other metric name ``n`` → ``metrics.<n>`` (mean);
- ``operator``/``threshold`` → the ``warning`` threshold;
- ``filters`` (an object ``{field: value}``) → export filters ``{field, "is", value}``
  (one that is not a valid export filter pauses the rule);
- ``window_s`` kept, clamped to 60 s .. 7 days.

A rule that cannot be expressed (operator ``==``/``!=``, a non-numeric threshold) is kept
with a ``>=`` threshold and **paused**, and its description says why, so it fires nothing
until a person fixes it. The downgrade writes the first shape back from the rule
(``warning``, else ``critical``) and ``enabled`` from ``paused``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_AT = sa.DateTime(timezone=True)
_WEEK = 7 * 86_400
_FILTER_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_\-:@$#]+){0,8}")
_NAME = re.compile(r"[A-Za-z0-9_\-:@$#]+(?:\.[A-Za-z0-9_\-:@$#]+){0,7}")
_FIXED = {"event_count", "error_rate", "cost", "tokens", "latency_p50", "latency_p95",
          "latency_p99"}


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _field(metric: str, aggregation: str) -> tuple[str, str | None]:
    if aggregation == "count" or metric in ("count", "events", "event_count"):
        return "event_count", None
    if metric in ("latency", "duration", "latency_ms") and aggregation in ("p50", "p95", "p99"):
        return f"latency_{aggregation}", None
    if metric in ("latency", "duration"):
        return "latency_p50", None
    if metric in ("tokens", "total_tokens"):
        return "tokens", None
    if metric in ("errors", "error", "error_rate"):
        return "error_rate", None
    if metric in _FIXED:
        return metric, None
    if metric.startswith(("metrics.", "feedback.")) and _NAME.fullmatch(metric.split(".", 1)[1]):
        return metric, "mean"
    name = re.sub(r"[^A-Za-z0-9_\-:@$#]", "_", metric)[:200] or "value"
    return f"metrics.{name}", "mean"


def rule_from_legacy(old: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The rule for a first-shape condition, and why it must be paused (None: it need not)."""
    problem = None
    field, aggregation = _field(str(old.get("metric") or ""), str(old.get("aggregation") or ""))
    operator = old.get("operator")
    if operator not in (">", ">=", "<", "<="):
        problem = f"operator {operator!r} is not supported by alert rules"
        operator = ">="
    threshold = old.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        problem = problem or f"threshold {threshold!r} is not a number"
        threshold = 0.0
    window = old.get("window_s")
    window = int(window) if isinstance(window, (int, float)) and not isinstance(
        window, bool) else 300
    raw_filters = old.get("filters") or {}
    if isinstance(raw_filters, dict):
        filters = [{"field": str(k), "operator": "is", "value": v}
                   for k, v in raw_filters.items()]
    else:
        filters = [f for f in raw_filters if isinstance(f, dict)]
    if any(not _FILTER_FIELD.fullmatch(str(f.get("field"))) or isinstance(
            f.get("value"), (list, dict)) for f in filters):
        problem = problem or "a filter is not one of the export filter language"
    rule = {
        "type": "aggregate", "field": field, "aggregation": aggregation, "filters": filters,
        "window_s": max(60, min(_WEEK, window)), "comparison_window_s": None,
        "direction": None, "warning": {"op": operator, "value": float(threshold)},
        "critical": None, "min_duration_s": 0,
    }
    return rule, problem


def legacy_from_rule(rule: dict[str, Any]) -> dict[str, Any]:
    threshold = rule.get("warning") or rule.get("critical") or {"op": ">=", "value": 0.0}
    field = str(rule.get("field") or "")
    if field == "event_count":
        metric, aggregation = "events", "count"
    elif field.startswith("latency_"):
        metric, aggregation = "latency", field.removeprefix("latency_")
    else:
        metric, aggregation = field, "avg" if "." in field else "sum"
    filters = {f["field"]: f.get("value") for f in rule.get("filters") or []
               if isinstance(f, dict) and f.get("operator") == "is" and "field" in f}
    return {"metric": metric, "aggregation": aggregation, "operator": threshold["op"],
            "threshold": threshold["value"], "window_s": rule.get("window_s") or 300,
            "filters": filters}


_TABLE = sa.table(
    "alert_definitions", sa.column("id", sa.String), sa.column("condition", sa.JSON),
    sa.column("description", sa.Text), sa.column("enabled", sa.Boolean),
    sa.column("paused", sa.Boolean),
)


def upgrade() -> None:
    with op.batch_alter_table("alert_definitions") as batch:
        batch.add_column(sa.Column("paused", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("muted", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("evaluation_state", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("stage", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("state_changed_at", _AT, nullable=True))
    connection = op.get_bind()
    rows = connection.execute(sa.select(_TABLE.c.id, _TABLE.c.condition, _TABLE.c.description,
                                        _TABLE.c.enabled)).all()
    for alert_id, condition, description, enabled in rows:
        old = _loads(condition) or {}
        paused = not enabled
        if "type" in old and "field" in old:  # already a rule
            rule = old
        else:
            rule, problem = rule_from_legacy(old)
            if problem is not None:
                paused = True
                description = (f"{description or ''}\n[migrated, paused: {problem}; "
                               "set the thresholds and resume]").strip()
        connection.execute(_TABLE.update().where(_TABLE.c.id == alert_id).values(
            condition=rule, description=description, paused=paused))
    with op.batch_alter_table("alert_definitions") as batch:
        batch.drop_column("enabled")


def downgrade() -> None:
    with op.batch_alter_table("alert_definitions") as batch:
        batch.add_column(sa.Column("enabled", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))
    connection = op.get_bind()
    rows = connection.execute(sa.select(_TABLE.c.id, _TABLE.c.condition,
                                        _TABLE.c.paused)).all()
    for alert_id, condition, paused in rows:
        rule = _loads(condition) or {}
        old = legacy_from_rule(rule) if "field" in rule else rule
        connection.execute(_TABLE.update().where(_TABLE.c.id == alert_id).values(
            condition=old, enabled=not paused))
    with op.batch_alter_table("alert_definitions") as batch:
        for column in ("state_changed_at", "stage", "evaluation_state", "muted", "paused"):
            batch.drop_column(column)
