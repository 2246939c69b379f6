"""Alert rules: what to measure in a project, over which window, and the thresholds at
which it fires; their state.

The control plane stores rules (create, read, update, delete, and the state transitions
below); every change is written to the config log in the same transaction, which pushes
it to the data plane serving the project (kind ``alert_rule``, the alerts API's JSON).
That data plane evaluates the rule and reports ``triggered``/``resolved``; the notifier
delivers (``docs/alerts.md``).

**The condition** (:func:`check_condition`, raising :class:`~apiary.errors.InvalidRequest`
naming the field): ``type`` ``aggregate`` (the value over the last ``window_s``) or
``drift`` (the relative change of the value against the ``comparison_window_s`` just before
the window, in a ``direction``: ``up`` ``(cur - prev) / |prev|``, ``down``
``(prev - cur) / |prev|``, ``either`` ``|cur - prev| / |prev|``; so a drift threshold is
a relative change, 0.5 = +50 %, with ``>``/``>=`` and a positive value); the measured
``field`` (:data:`FIELDS`, ``metrics.<name>``, ``feedback.<name>``, the last two with an
``aggregation``: ``mean`` or ``share_true``); ``filters`` in the export filter language;
``warning`` and ``critical`` thresholds, at least one, both in the same direction and
critical the stricter; ``min_duration_s``, how long a value must stay past a threshold
before the stage fires.

**State**: ``paused`` (not evaluated) and ``muted`` (evaluated, nothing sent) are the
control plane's, pushed with the rule; ``evaluation_state`` (``triggered`` with a
``stage``, or ``resolved``) is the data plane's report. ``POST .../resolve`` marks a
triggered alert resolved by hand (the evaluator starts a new firing at the next
crossing). A transition that cannot happen (resume an alert that is not paused, ...) is
:class:`~apiary.errors.Conflict`. The data plane's reports arrive on the federation stream
(:func:`apiary.control.federation.record_activity`): stored in ``alert_events``, a
transition also moves ``evaluation_state``, ``stage`` and ``state_changed_at`` unless it
is older than the current ``state_changed_at`` (a manual resolve stamps it with now).

**Activity** (:func:`activity`): the stored transitions and delivery outcomes of an alert,
newest first. **Preview** (:func:`start_preview`, :func:`await_preview`): the series of the
rule's value over a period, computed by the data plane serving the project and asked for on
its stream (a command), waited for up to 10 s.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from apiary.control._common import new_id
from apiary.control.db import AlertDefinition, AlertEvent, DataPlane, Project
from apiary.control.federation import (
    PREVIEW_TIMEOUT_S,
    abandon_preview,
    queue_preview,
    take_preview,
)
from apiary.control.service import ControlPlane
from apiary.errors import Conflict, DataPlaneUnavailable, InvalidRequest, NotFound
from apiary.store import check_filters

#: Fields measured without an aggregation.
FIELDS = frozenset({"event_count", "error_rate", "latency_p50", "latency_p95", "latency_p99",
                    "cost", "tokens"})
#: ``metrics.<name>`` / ``feedback.<name>``: a key path as the export filters read it.
_KEY = r"[A-Za-z0-9_\-:@$#]+"
_SCORE_FIELD = re.compile(rf"(metrics|feedback)\.{_KEY}(?:\.{_KEY}){{0,7}}")
_UPPER = (">", ">=")

log = logging.getLogger(__name__)

Transition = Literal["pause", "resume", "mute", "unmute", "resolve"]

#: The longest period a preview covers, and the one it covers by default (ending now).
MAX_PREVIEW_SPAN_S = 31 * 86_400
DEFAULT_PREVIEW_SPAN_S = 86_400
#: The most activity events one request returns.
MAX_ACTIVITY = 500


def _bad(message: str, field: str, **context: Any) -> InvalidRequest:
    return InvalidRequest(message, field=f"condition.{field}", **context)


def check_condition(condition: dict[str, Any]) -> dict[str, Any]:
    """The condition as stored (defaults filled in), or InvalidRequest naming the field.

    ``condition`` has the keys of ``AlertCondition`` (types already checked)."""
    rule = dict(condition)
    field = str(rule["field"])
    if field in FIELDS:
        if rule.get("aggregation") is not None:
            raise _bad(f"aggregation applies to metrics.<name> and feedback.<name>, not {field}",
                       "aggregation")
    elif _SCORE_FIELD.fullmatch(field):
        rule["aggregation"] = rule.get("aggregation") or "mean"
    else:
        raise _bad(f"unknown field {field[:80]!r}; use " + ", ".join(sorted(FIELDS))
                   + ", metrics.<name> or feedback.<name>", "field")
    try:
        check_filters(rule.get("filters") or [])
    except InvalidRequest as exc:
        raise _bad(f"filters: {exc.message}", "filters", filter=exc.context.get("field")) \
            from exc
    if rule["type"] == "aggregate":
        for drift_only in ("comparison_window_s", "direction"):
            if rule.get(drift_only) is not None:
                raise _bad(f"{drift_only} applies to drift conditions only", drift_only)
    else:
        rule["comparison_window_s"] = rule.get("comparison_window_s") or rule["window_s"]
        rule["direction"] = rule.get("direction") or "either"
    warning, critical = rule.get("warning"), rule.get("critical")
    if warning is None and critical is None:
        raise _bad("set a warning or a critical threshold (or both)", "warning")
    if rule["type"] == "drift":
        for stage, threshold in (("warning", warning), ("critical", critical)):
            if threshold is not None and (threshold["op"] not in _UPPER
                                          or threshold["value"] <= 0):
                raise _bad("a drift threshold is a relative change in the rule's direction: "
                           "use > or >= with a positive value (0.5 = 50 %)", stage)
    if warning is not None and critical is not None:
        _check_stricter(warning, critical)
    return rule


def _check_stricter(warning: dict[str, Any], critical: dict[str, Any]) -> None:
    """Critical must fire only when warning does, and not always with it."""
    upper = warning["op"] in _UPPER
    if (critical["op"] in _UPPER) != upper:
        raise _bad("warning and critical must compare in the same direction "
                   f"(warning {warning['op']}, critical {critical['op']})", "critical")
    w, c = float(warning["value"]), float(critical["value"])
    stricter = (c > w if upper else c < w) or (
        c == w and critical["op"] in (">", "<") and warning["op"] in (">=", "<="))
    if not stricter:
        raise _bad(f"critical ({critical['op']} {c:g}) must be stricter than warning "
                   f"({warning['op']} {w:g})", "critical")


def create_alert(
    cp: ControlPlane, db: Session, project: Project, *, name: str, description: str,
    condition: dict[str, Any], channels: list[dict[str, Any]], author: str,
) -> AlertDefinition:
    """A new rule, active (not paused, not muted); logged for the project's data plane
    when the transaction commits."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("an alert name must have 1 to 200 characters", field="name")
    rule = check_condition(condition)
    _check_unique(db, project.id, name, None)
    now = cp.now()
    alert = AlertDefinition(
        id=new_id(), org_id=project.org_id, workspace_id=project.workspace_id,
        project_id=project.id, name=name, description=description, condition=rule,
        channels=channels, paused=False, muted=False, created_by=author, created_at=now,
        updated_at=now,
    )
    db.add(alert)
    db.flush()
    return alert


def _check_unique(db: Session, project_id: str, name: str, alert_id: str | None) -> None:
    statement = select(AlertDefinition.id).where(
        AlertDefinition.project_id == project_id, AlertDefinition.name == name
    )
    if alert_id is not None:
        statement = statement.where(AlertDefinition.id != alert_id)
    if db.execute(statement).first():
        raise Conflict("an alert with this name exists in the project", field="name")


def get_alert(db: Session, project: Project, alert_id: str) -> AlertDefinition:
    alert = db.get(AlertDefinition, alert_id)
    if alert is None or alert.project_id != project.id:
        raise NotFound("alert not found")
    return alert


def list_alerts(db: Session, project: Project) -> list[AlertDefinition]:
    return list(db.scalars(
        select(AlertDefinition).where(AlertDefinition.project_id == project.id)
        .order_by(AlertDefinition.name)
    ))


def update_alert(
    cp: ControlPlane, db: Session, alert: AlertDefinition, changes: dict[str, Any]
) -> AlertDefinition:
    """Apply ``changes`` (any of name, description, condition, channels); the state changes
    only through :func:`transition`."""
    if "name" in changes:
        name = str(changes["name"]).strip()
        if not name or len(name) > 200:
            raise InvalidRequest("an alert name must have 1 to 200 characters", field="name")
        _check_unique(db, alert.project_id, name, alert.id)
        alert.name = name
    if changes.get("condition") is not None:
        alert.condition = check_condition(changes["condition"])
    for field in ("description", "channels"):
        if changes.get(field) is not None:
            setattr(alert, field, changes[field])
    alert.updated_at = cp.now()
    return alert


def transition(cp: ControlPlane, alert: AlertDefinition, action: Transition) -> AlertDefinition:
    """Pause, resume, mute, unmute or resolve ``alert`` (Conflict when it cannot: resume of
    an alert that is not paused, resolve of one that is not triggered, ...). Logged for
    the project's data plane in the caller's transaction."""
    if action == "pause" and alert.paused:
        raise Conflict("the alert is already paused", alert_id=alert.id, state=alert.state)
    if action == "resume" and not alert.paused:
        raise Conflict("only a paused alert can be resumed", alert_id=alert.id,
                       state=alert.state)
    if action == "mute" and alert.muted:
        raise Conflict("the alert is already muted", alert_id=alert.id, state=alert.state)
    if action == "unmute" and not alert.muted:
        raise Conflict("only a muted alert can be unmuted", alert_id=alert.id,
                       state=alert.state)
    if action == "resolve" and alert.evaluation_state != "triggered":
        raise Conflict("only a triggered alert can be resolved", alert_id=alert.id,
                       state=alert.state)
    now = cp.now()
    if action in ("pause", "resume"):
        alert.paused = action == "pause"
    elif action in ("mute", "unmute"):
        alert.muted = action == "mute"
    else:
        alert.evaluation_state, alert.stage, alert.state_changed_at = "resolved", None, now
    alert.updated_at = now
    log.info("alert state changed", extra={"alert_id": alert.id, "project_id": alert.project_id,
                                           "action": action, "state": alert.state})
    return alert


def delete_alert(db: Session, alert: AlertDefinition) -> None:
    db.delete(alert)


# --- activity and preview ----------------------------------------------------------


def activity(db: Session, alert: AlertDefinition, *, limit: int = 50) -> list[AlertEvent]:
    """The alert's stored activity (transitions and delivery outcomes), newest first (by
    when it happened on the data plane, then by when it arrived)."""
    if not 1 <= limit <= MAX_ACTIVITY:
        raise InvalidRequest(f"limit is 1 to {MAX_ACTIVITY}", field="limit")
    return list(db.scalars(
        select(AlertEvent).where(AlertEvent.alert_id == alert.id,
                                 AlertEvent.project_id == alert.project_id)
        .order_by(AlertEvent.at.desc(), AlertEvent.received_at.desc(), AlertEvent.id.desc())
        .limit(limit)))


def preview_period(now: datetime, from_s: int | None, to_s: int | None) -> tuple[int, int]:
    """The period ``[from, to]`` (unix seconds) a preview covers: by default the last 24 h
    (ending at ``to`` or now); ``from`` must be before ``to`` and the span at most 31 days
    (InvalidRequest naming the parameter)."""
    to = int(now.timestamp()) if to_s is None else int(to_s)
    start = to - DEFAULT_PREVIEW_SPAN_S if from_s is None else int(from_s)
    if start < 0:
        raise InvalidRequest("from is a time in unix seconds, not before 1970", field="from")
    if start >= to:
        raise InvalidRequest("from must be before to", field="from")
    if to - start > MAX_PREVIEW_SPAN_S:
        raise InvalidRequest(f"a preview covers at most 31 days ({MAX_PREVIEW_SPAN_S} s)",
                             field="from")
    return start, to


def start_preview(cp: ControlPlane, db: Session, project: Project, alert: AlertDefinition,
                  from_s: int, to_s: int) -> tuple[str, str]:
    """Ask the data plane serving ``project`` for the preview (a command on its stream,
    durable when ``db`` commits); the command's id and the data plane's name.

    409 when no data plane serves the project (assign one) or it has no stream (a legacy
    data plane); 503 ``data_plane_unavailable`` when it is not connected now."""
    if project.data_plane_id is None:
        raise Conflict(f"project {project.id} is not assigned to a data plane, which computes "
                       "its alerts; assign it (PUT /cp/v1/projects/{project_id}/data-plane)",
                       project_id=project.id)
    plane = db.get(DataPlane, project.data_plane_id)
    if plane is None or not plane.federated or plane.status != "active":
        state = "gone" if plane is None else ("a legacy data plane without a stream"
                                              if not plane.federated else plane.status)
        raise Conflict(f"project {project.id}'s data plane ({state}) cannot compute a "
                       "preview; assign the project to an active federated data plane "
                       "(PUT /cp/v1/projects/{project_id}/data-plane)", project_id=project.id)
    if not plane.connected:
        raise DataPlaneUnavailable(
            f"data plane {plane.name} ({plane.id}), which serves project {project.id}, is "
            "not connected to the control plane; retry once it is", project_id=project.id,
            data_plane_id=plane.id)
    command_id = queue_preview(db, plane, project_id=project.id, alert_id=alert.id,
                               from_s=from_s, to_s=to_s, now=cp.now())
    return command_id, f"{plane.name} ({plane.id})"


async def await_preview(cp: ControlPlane, command_id: str, data_plane: str, *,
                        timeout_s: float | None = None,
                        poll_s: float = 0.1) -> dict[str, Any]:
    """The data plane's preview for command ``command_id`` (:func:`start_preview`), read
    from cpdb as soon as its answer is recorded (the command's row is then deleted); 503
    ``data_plane_unavailable`` naming ``data_plane`` when it does not answer within
    ``timeout_s`` (the command is then never sent, if it was not yet) or answers with an
    error."""

    def read() -> tuple[bool, str | None, Any] | None:
        with cp.transaction() as db:
            return take_preview(db, command_id)

    timeout_s = PREVIEW_TIMEOUT_S if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await asyncio.to_thread(read)
        if answer is not None:
            ok, error, result = answer
            break
        if time.monotonic() >= deadline:
            def give_up() -> None:
                with cp.transaction() as db:
                    abandon_preview(db, command_id)

            await asyncio.to_thread(give_up)
            raise DataPlaneUnavailable(
                f"data plane {data_plane} did not answer the preview within "
                f"{timeout_s:g} s; retry", command_id=command_id)
        await asyncio.sleep(poll_s)
    if ok and isinstance(result, dict):
        return result
    if error == "not found":
        raise DataPlaneUnavailable(
            f"data plane {data_plane} does not hold this alert yet (its configuration is "
            "on its way); retry", command_id=command_id)
    raise DataPlaneUnavailable(f"data plane {data_plane} could not compute the preview: "
                               f"{error or 'no result'}", command_id=command_id)
