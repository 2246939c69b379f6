"""Alert activity and previews over the federation stream, the control plane's side
(docs/alerts.md, "Activity" and "Preview").

**Activity** (:func:`record_activity`): a data plane reports each transition of an alert it
evaluates and each channel's delivery outcome as an ``AlertActivityReport`` (an event id and
the activity's JSON). In one transaction the control plane

1. validates it (:class:`ReportedActivity`); a report that is not an activity is refused
   for good (logged);
2. checks that the project is served by the reporting data plane and that the alert, if it
   still exists, is that project's: a data plane reports only its own projects, so anything
   else is refused for good (logged as a warning: a misbehaving or compromised data plane);
3. inserts the ``alert_events`` row if absent (the event id is its key: a report sent twice
   is stored once, and its transition applied once);
4. for a ``transition``, sets the alert's ``evaluation_state``, ``stage`` (the stage when
   triggered, None when resolved) and ``state_changed_at`` (the event's ``at``) — only if
   ``at`` is not older than the current ``state_changed_at``, so a report that arrives
   late never moves the state back. The alert's ``updated_at`` (its definition) is left
   alone. The change goes to the config log like any alert update (the rule is pushed
   back to the data plane with its state).

It returns once that transaction committed (or the report was refused): then the stream
acknowledges the event id and the data plane removes it from its ``alert-activity`` stream.
A report that could not be stored (cpdb unavailable) is not acknowledged; the data plane
sends it again.

**Previews** (:func:`queue_preview`, :func:`take_preview`): a ``data_plane_commands`` row
of kind :data:`ALERT_PREVIEW` that the stream sends as an ``AlertPreview`` command; the data
plane's answer (``CommandResult.payload``, JSON) is stored in the row's ``body["result"]``
and the row deleted when the caller reads it. A preview the caller gave up on is deleted if
it was not sent yet (:func:`abandon_preview`); any preview row older than
:data:`PREVIEW_KEPT_S` is deleted (:func:`expire_previews`, each poll of the stream), so
previews never pile up in the data plane's command history.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field, ValidationError
from sqlalchemy import delete, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from apiary._private import metrics
from apiary.alert_activity import AlertActivity
from apiary.control.db import AlertDefinition, AlertEvent, DataPlane, DataPlaneCommand, Project

log = logging.getLogger("apiary.control.federation")

#: The command kind of a preview (``data_plane_commands.kind``).
ALERT_PREVIEW = "alert_preview"
#: How long a preview waits for the data plane's answer.
PREVIEW_TIMEOUT_S = 10.0
#: Preview rows older than this are deleted (answered late, or never read).
PREVIEW_KEPT_S = 60.0

RecordOutcome = Literal["stored", "duplicate", "refused"]


class ReportedActivity(AlertActivity):
    """An alert activity as a data plane reports it: the one model
    (:class:`apiary.alert_activity.AlertActivity`) with the control plane's column limits."""

    event_id: str = Field(min_length=1, max_length=200)
    org_id: str = Field(min_length=1, max_length=64)
    project_id: str = Field(min_length=1, max_length=64)
    alert_id: str = Field(min_length=1, max_length=64)
    channel_id: str | None = Field(default=None, max_length=64)
    channel_type: str | None = Field(default=None, max_length=16)
    attempts: int | None = Field(default=None, ge=0)


def _refuse(data_plane_id: str, event_id: str, reason: str, **context: Any) -> RecordOutcome:
    metrics.inc(metrics.CP_ALERT_ACTIVITY, outcome="refused")
    log.warning("alert activity refused: %s", reason, extra={
        "data_plane_id": data_plane_id, "event_id": event_id[:200], **context})
    return "refused"


def record_activity(db: Session, *, data_plane_id: str, event_id: str, payload: bytes,
                    now: datetime) -> RecordOutcome:
    """Store one reported activity (module docstring) in ``db``'s transaction: ``stored``,
    ``duplicate`` (stored before: nothing changes) or ``refused`` (never storable: not an
    activity, another data plane's project, another project's alert). Either way the event
    is done with once the transaction commits."""
    try:
        activity = ReportedActivity.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        return _refuse(data_plane_id, event_id, "not an alert activity",
                       error=f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
    if activity.event_id != event_id:
        return _refuse(data_plane_id, event_id, "the report's event id is not its payload's")
    project = db.get(Project, activity.project_id)
    if project is None or project.data_plane_id != data_plane_id \
            or project.org_id != activity.org_id:
        return _refuse(data_plane_id, event_id, "the project is not served by this data plane",
                       project_id=activity.project_id)
    alert = db.get(AlertDefinition, activity.alert_id)
    if alert is not None and alert.project_id != project.id:
        return _refuse(data_plane_id, event_id, "the alert is not the project's",
                       project_id=project.id, alert_id=activity.alert_id)
    if db.get(AlertEvent, activity.event_id) is not None:
        metrics.inc(metrics.CP_ALERT_ACTIVITY, outcome="duplicate")
        return "duplicate"
    try:
        with db.begin_nested():
            db.add(AlertEvent(
                id=activity.event_id, org_id=project.org_id, project_id=project.id,
                alert_id=activity.alert_id, data_plane_id=data_plane_id, kind=activity.kind,
                stage=activity.stage, state=activity.state, value=activity.value,
                threshold=activity.threshold, window_end=activity.window_end,
                muted=activity.muted, channel_id=activity.channel_id,
                channel_type=activity.channel_type, outcome=activity.outcome,
                attempts=activity.attempts, detail=activity.detail, at=activity.at,
                received_at=now))
    except IntegrityError:  # stored meanwhile by another transaction
        metrics.inc(metrics.CP_ALERT_ACTIVITY, outcome="duplicate")
        return "duplicate"
    if (activity.kind == "transition" and alert is not None and activity.state is not None
            and (alert.state_changed_at is None or activity.at >= alert.state_changed_at)):
        alert.evaluation_state = activity.state
        alert.stage = activity.stage if activity.state == "triggered" else None
        alert.state_changed_at = activity.at
        log.info("alert state reported", extra={
            "alert_id": alert.id, "project_id": project.id, "state": activity.state,
            "stage": activity.stage, "data_plane_id": data_plane_id})
    metrics.inc(metrics.CP_ALERT_ACTIVITY, outcome="stored")
    return "stored"


# --- previews ------------------------------------------------------------------------


def queue_preview(db: Session, plane: DataPlane, *, project_id: str, alert_id: str,
                  from_s: int, to_s: int, now: datetime) -> str:
    """A preview command for ``plane``'s stream (sent within one poll of its stream);
    its id."""
    command = DataPlaneCommand(
        id=str(uuid.uuid4()), data_plane_id=plane.id, kind=ALERT_PREVIEW,
        body={"project_id": project_id, "alert_id": alert_id, "from": int(from_s),
              "to": int(to_s)},
        created_at=now)
    db.add(command)
    db.flush()
    return command.id


def take_preview(db: Session, command_id: str) -> tuple[bool, str | None, Any] | None:
    """Once the data plane answered the preview ``command_id``: ``(ok, error, result)``,
    and the row is deleted; else None (not answered yet)."""
    command = db.get(DataPlaneCommand, command_id)
    if command is None or command.completed_at is None:
        return None
    answer = bool(command.ok), command.error, (command.body or {}).get("result")
    db.delete(command)
    return answer


def abandon_preview(db: Session, command_id: str) -> None:
    """The caller stopped waiting: a preview not sent yet is deleted (never sent); a sent
    one stays until :func:`expire_previews` (its late answer is recorded meanwhile)."""
    db.execute(delete(DataPlaneCommand).where(
        DataPlaneCommand.id == command_id, DataPlaneCommand.kind == ALERT_PREVIEW,
        DataPlaneCommand.sent_at.is_(None)))


def expire_previews(db: Session, data_plane_id: str, now: datetime) -> int:
    """Delete the preview commands of ``data_plane_id`` nobody waits for any more: unsent
    ones older than :data:`PREVIEW_TIMEOUT_S` (never sent), and any older than
    :data:`PREVIEW_KEPT_S`; how many."""
    result = db.execute(delete(DataPlaneCommand).where(
        DataPlaneCommand.data_plane_id == data_plane_id,
        DataPlaneCommand.kind == ALERT_PREVIEW,
        or_(DataPlaneCommand.created_at < now - timedelta(seconds=PREVIEW_KEPT_S),
            DataPlaneCommand.sent_at.is_(None)
            & (DataPlaneCommand.created_at < now - timedelta(seconds=PREVIEW_TIMEOUT_S)))))
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = ["ALERT_PREVIEW", "PREVIEW_KEPT_S", "PREVIEW_TIMEOUT_S", "RecordOutcome",
           "ReportedActivity", "abandon_preview", "expire_previews", "queue_preview",
           "record_activity", "take_preview"]
