"""The config log (``config_changes``): every change data planes must apply, in order.

**Written in the same transaction as the change.** :func:`install_config_log` hooks the
cpdb session factory: after each flush it notes which federated objects the flush
touched (evaluators and their versions, prompt templates with their versions and
environments, alert rules, API keys that got revoked, projects whose data plane changed),
and just before the transaction commits it appends **one entry per object** holding the
object's complete state then (or its deletion). So a committed change always has its
entry, a rolled-back one never has, and every code path (routes, the admin CLI) is
covered without each remembering to log. Entries of one transaction get consecutive
versions in a fixed order (kind, then object id).

Kinds and payloads (JSON; ``deleted`` entries carry none): ``metric`` — the evaluator as
the control plane's evaluator API returns it (the JSON the data plane's ``/v1/metrics``
and its online evaluation are computed from: ``spec_of``/``metric_out``); ``prompt`` — the
template as the prompt API returns it; ``alert_rule`` — the alert as the alerts API returns
it; ``key_revoked`` — ``{key_id, project_id, workspace_id}``; ``project_assigned`` —
``{project_id, workspace_id, org_id, name, data_plane_id}``; ``project_unassigned`` —
``{project_id, data_plane_id}``; ``project_revoked`` — ``{project_id}``;
``notification_channel`` — an org's channel (:func:`notification_channel_change`) whose
secrets stay encrypted in the log (``sealed_secrets``: the channel row's own ciphertext,
under the control plane's envelope) and are opened only into the message sent
(:func:`wire_payload`: the stream is the authenticated control-plane to data-plane channel,
and the data plane seals them with its own envelope on arrival);
``notification_test`` — ``{test_id, channel_id, org_id, workspace_id, project_id,
requested_at}``, a channel's test message for the one data plane stamped on it. These two
are written explicitly by :mod:`apiary.control.config.notifications` in the transaction of
the change (the channel's secrets are only known decrypted there), not by the hook.

Each entry is stamped with the data plane serving its project at that moment
(``data_plane_id``). **The sending rule** (:func:`entries_for`): a data plane resuming from
version V gets every entry above V stamped with its id, or without a project but of a
workspace it serves a project of, or of an org kind (``notification_channel``, no project,
no workspace) of an org it serves a project of, in version order; and for each
``project_assigned`` to it above V, first every earlier entry of that project and every
earlier org-kind entry of its org (a replay with the entries' original, lower versions; a
``notification_test`` is never replayed). Payloads are full state, so applying in that
order ends in the right state, and applying twice changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any

import orjson
from sqlalchemy import event, func, inspect, or_, select
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from apiary.control._common import utcnow
from apiary.control.db import (
    AlertDefinition,
    ApiKey,
    ConfigChange,
    EvaluatorConfig,
    EvaluatorVersion,
    NotificationChannel,
    Project,
    PromptEnvironment,
    PromptTemplate,
    PromptVersion,
)
from apiary.control.envelope import Envelope
from apiary.errors import ConfigurationError

KINDS = ("metric", "alert_rule", "prompt", "key_revoked", "project_assigned",
         "project_unassigned", "project_revoked", "notification_channel",
         "notification_test")
#: Org-scoped kinds: no project; sent to every data plane serving a project of the org.
ORG_KINDS = ("notification_channel",)
#: Kinds that are about a data plane's assignment, not the project's configuration: a
#: replay leaves them out (they belong to the data plane they name).
ASSIGNMENT_KINDS = ("project_assigned", "project_unassigned")
#: Kinds that are one-off requests, not state: a replay leaves them out.
NOT_REPLAYED = ("notification_test",)
_PENDING = "apiary.config_log.pending"
log = logging.getLogger("apiary.control.federation")
_WRITING = "apiary.config_log.writing"


@dataclass(slots=True)
class _Subject:
    """An object a flush touched, with the tenant it belongs to (captured at flush time,
    so a deleted object's still known)."""

    kind: str
    object_id: str
    org_id: str | None
    workspace_id: str | None
    project_id: str | None
    #: Projects: the data plane before this transaction's first change.
    previous_data_plane: str | None = None
    #: Projects: deleted in this transaction.
    deleted: bool = False


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _changed(obj: object, attribute: str) -> bool:
    return bool(inspect(obj).attrs[attribute].history.has_changes())


def _subject_of(obj: object, deleted: bool) -> tuple[tuple[str, str], _Subject] | None:
    """What a touched row means for the log (None: nothing data planes need)."""
    if isinstance(obj, EvaluatorConfig):
        return (("metric", obj.id),
                _Subject("metric", obj.id, obj.org_id, obj.workspace_id, obj.project_id))
    if isinstance(obj, EvaluatorVersion):
        return (("metric", obj.evaluator_id),
                _Subject("metric", obj.evaluator_id, obj.org_id, None, obj.project_id))
    if isinstance(obj, PromptTemplate):
        return (("prompt", obj.id),
                _Subject("prompt", obj.id, obj.org_id, obj.workspace_id, obj.project_id))
    if isinstance(obj, PromptVersion | PromptEnvironment):
        return (("prompt", obj.template_id),
                _Subject("prompt", obj.template_id, obj.org_id, None, obj.project_id))
    if isinstance(obj, AlertDefinition):
        return (("alert_rule", obj.id),
                _Subject("alert_rule", obj.id, obj.org_id, obj.workspace_id, obj.project_id))
    if isinstance(obj, ApiKey):
        if deleted or obj.revoked_at is None or not _changed(obj, "revoked_at"):
            return None
        return (("key_revoked", obj.id),
                _Subject("key_revoked", obj.id, obj.org_id, obj.workspace_id, obj.project_id))
    if isinstance(obj, Project):
        if not deleted and not _changed(obj, "data_plane_id"):
            return None
        history = inspect(obj).attrs["data_plane_id"].history
        before = (history.deleted[0] if history.deleted
                  else obj.data_plane_id if not history.added else None)
        return (("project", obj.id),
                _Subject("project", obj.id, obj.org_id, obj.workspace_id, obj.id,
                         previous_data_plane=before, deleted=deleted))
    return None


def _after_flush(session: Session, _context: object) -> None:
    if session.info.get(_WRITING):
        return
    pending: dict[tuple[str, str], _Subject] = session.info.setdefault(_PENDING, {})
    deleted = set(session.deleted)
    for obj in chain(session.new, session.dirty, deleted):
        found = _subject_of(obj, obj in deleted)
        if found is None:
            continue
        key, subject = found
        known = pending.get(key)
        if known is None:
            pending[key] = subject
        else:  # keep the first state seen (the data plane before the transaction)
            known.deleted = known.deleted or subject.deleted
            known.workspace_id = known.workspace_id or subject.workspace_id


def _before_commit(session: Session) -> None:
    # The commit's own flush comes after this hook: flush now, so that changes not yet
    # flushed are noted (_after_flush) before the entries are written.
    session.flush()
    pending: dict[tuple[str, str], _Subject] = session.info.pop(_PENDING, {})
    if not pending:
        return
    session.info[_WRITING] = True
    try:
        now = utcnow()
        for key in sorted(pending):
            for change in _entries(session, pending[key], now):
                session.add(change)
        session.flush()
    finally:
        session.info.pop(_WRITING, None)


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended (committed: already written; rolled back: nothing
    # to write). A savepoint's end keeps what the transaction noted.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def install_config_log(sessions: sessionmaker[Session]) -> None:
    """Make every transaction of ``sessions`` (cpdb's) write its config-log entries
    before it commits (module docstring). Idempotent."""
    if event.contains(sessions, "after_flush", _after_flush):
        return
    event.listen(sessions, "after_flush", _after_flush)
    event.listen(sessions, "before_commit", _before_commit)
    event.listen(sessions, "after_transaction_end", _after_transaction_end)


# --- what each entry holds ---------------------------------------------------------


def evaluator_payload(session: Session, evaluator: EvaluatorConfig) -> dict[str, Any]:
    """The evaluator as the control plane's evaluator API returns it (``EvaluatorOut``)."""
    versions = session.scalars(select(EvaluatorVersion).where(
        EvaluatorVersion.evaluator_id == evaluator.id).order_by(EvaluatorVersion.version))
    return {
        "id": evaluator.id, "project_id": evaluator.project_id, "name": evaluator.name,
        "type": evaluator.type, "description": evaluator.description,
        "enabled": evaluator.enabled, "deployed_version": evaluator.deployed_version,
        "versions": [{
            "version": v.version, "criteria": v.criteria, "code": v.code,
            "return_type": v.return_type, "pass_min": v.pass_min, "pass_max": v.pass_max,
            "sampling_pct": v.sampling_pct, "filters": v.filters,
            "model_params": v.model_params, "message": v.message,
            "created_by": v.created_by, "created_at": _iso(v.created_at),
        } for v in versions],
        "created_at": _iso(evaluator.created_at), "updated_at": _iso(evaluator.updated_at),
    }


def prompt_payload(session: Session, template: PromptTemplate) -> dict[str, Any]:
    """The template as the control plane's prompt API returns it (``PromptTemplateOut``)."""
    versions = list(session.scalars(select(PromptVersion).where(
        PromptVersion.template_id == template.id).order_by(PromptVersion.version)))
    by_id = {v.id: v.version for v in versions}
    environments = {e.environment: by_id[e.version_id] for e in session.scalars(
        select(PromptEnvironment).where(PromptEnvironment.template_id == template.id))
        if e.version_id in by_id}
    return {
        "id": template.id, "project_id": template.project_id, "name": template.name,
        "tags": list(template.tags),
        "versions": [{"version": v.version, "body": v.body, "model_params": v.model_params,
                      "message": v.message, "created_by": v.created_by,
                      "created_at": _iso(v.created_at)} for v in versions],
        "environments": environments,
        "created_at": _iso(template.created_at), "updated_at": _iso(template.updated_at),
    }


def alert_payload(alert: AlertDefinition) -> dict[str, Any]:
    """The alert as the control plane's alerts API returns it (``AlertOut``)."""
    return {
        "id": alert.id, "project_id": alert.project_id, "name": alert.name,
        "description": alert.description, "condition": alert.condition,
        "channels": alert.channels, "state": alert.state, "paused": alert.paused,
        "muted": alert.muted, "evaluation_state": alert.evaluation_state,
        "stage": alert.stage, "state_changed_at": _iso(alert.state_changed_at),
        "created_by": alert.created_by,
        "created_at": _iso(alert.created_at), "updated_at": _iso(alert.updated_at),
    }


def _serving(session: Session, project_id: str | None) -> str | None:
    if project_id is None:
        return None
    return session.scalar(select(Project.data_plane_id).where(Project.id == project_id))


def _entries(session: Session, subject: _Subject, now: datetime) -> Iterable[ConfigChange]:
    def entry(kind: str, payload: dict[str, Any] | None, *, data_plane: str | None,
              deleted: bool = False, workspace_id: str | None = None) -> ConfigChange:
        return ConfigChange(
            kind=kind, org_id=subject.org_id,
            workspace_id=workspace_id or subject.workspace_id, project_id=subject.project_id,
            data_plane_id=data_plane, object_id=subject.object_id, deleted=deleted,
            payload=payload, changed_at=now)

    serving = _serving(session, subject.project_id)
    if subject.kind == "metric":
        evaluator = session.get(EvaluatorConfig, subject.object_id)
        if evaluator is None:
            return [entry("metric", None, data_plane=serving, deleted=True)]
        return [entry("metric", evaluator_payload(session, evaluator), data_plane=serving,
                      workspace_id=evaluator.workspace_id)]
    if subject.kind == "prompt":
        template = session.get(PromptTemplate, subject.object_id)
        if template is None:
            return [entry("prompt", None, data_plane=serving, deleted=True)]
        return [entry("prompt", prompt_payload(session, template), data_plane=serving,
                      workspace_id=template.workspace_id)]
    if subject.kind == "alert_rule":
        alert = session.get(AlertDefinition, subject.object_id)
        if alert is None:
            return [entry("alert_rule", None, data_plane=serving, deleted=True)]
        return [entry("alert_rule", alert_payload(alert), data_plane=serving)]
    if subject.kind == "key_revoked":
        return [entry("key_revoked", {"key_id": subject.object_id,
                                      "project_id": subject.project_id,
                                      "workspace_id": subject.workspace_id},
                      data_plane=serving)]
    # A project whose data plane changed, or that was deleted.
    project = session.get(Project, subject.object_id)
    before = subject.previous_data_plane
    if project is None or subject.deleted:
        return [entry("project_revoked", {"project_id": subject.object_id},
                      data_plane=before)]
    out = []
    if before is not None and before != project.data_plane_id:
        out.append(entry("project_unassigned", {"project_id": project.id,
                                                "data_plane_id": before}, data_plane=before))
    if project.data_plane_id is not None and project.data_plane_id != before:
        out.append(entry("project_assigned", {
            "project_id": project.id, "workspace_id": project.workspace_id,
            "org_id": project.org_id, "name": project.name,
            "data_plane_id": project.data_plane_id}, data_plane=project.data_plane_id))
    return out


def notification_channel_change(channel: NotificationChannel,
                                payload: dict[str, Any] | None, now: datetime) -> ConfigChange:
    """The entry of ``channel``'s full state ``payload`` (the data plane's form,
    ``apiary.dataplane.notifications.channels.Channel.from_plain``, without the secrets,
    which ``sealed_secrets`` holds encrypted: :func:`wire_payload` opens them), or of its
    deletion when ``payload`` is None (the payload is then ``{id, org_id}``: the data plane
    keys channels by org). The caller adds it in the change's transaction."""
    return ConfigChange(
        kind="notification_channel", org_id=channel.org_id, workspace_id=None,
        project_id=None, data_plane_id=None, object_id=channel.id, deleted=payload is None,
        payload=payload if payload is not None else {"id": channel.id,
                                                     "org_id": channel.org_id},
        changed_at=now)


def notification_test_change(*, test_id: str, channel: NotificationChannel, project: Project,
                             data_plane_id: str, requested_by: str | None,
                             now: datetime) -> ConfigChange:
    """The entry asking data plane ``data_plane_id`` (which serves ``project``) to publish a
    test message to ``channel``. The caller adds it in its transaction."""
    return ConfigChange(
        kind="notification_test", org_id=channel.org_id, workspace_id=project.workspace_id,
        project_id=project.id, data_plane_id=data_plane_id, object_id=test_id, deleted=False,
        payload={"test_id": test_id, "channel_id": channel.id, "org_id": channel.org_id,
                 "workspace_id": project.workspace_id, "project_id": project.id,
                 "requested_by": requested_by, "requested_at": _iso(now)},
        changed_at=now)


def wire_payload(change: ConfigChange, envelope: Envelope) -> dict[str, Any] | None:
    """The payload ``change`` is sent with: a ``notification_channel``'s secrets opened
    (``sealed_secrets`` decrypted under ``envelope`` into ``config``); any other entry's
    own. A secret that does not open (another envelope key) is logged and left out: the
    data plane then refuses the channel, never the stream."""
    payload = change.payload
    if payload is None or change.kind != "notification_channel" or change.deleted:
        return payload
    out = {k: v for k, v in payload.items() if k != "sealed_secrets"}
    sealed = payload.get("sealed_secrets")
    if not isinstance(sealed, str):
        return out
    try:
        opened = orjson.loads(envelope.decrypt(
            sealed, context=f"notification_channel:{change.object_id}"))
    except ConfigurationError as exc:
        log.error("a notification channel's secrets do not open; sent without them",
                  extra={"channel_id": change.object_id, "config_version": change.version,
                         "error": exc.message})
        return out
    out["config"] = {**dict(out.get("config") or {}), **opened}
    return out


# --- the sending rule -------------------------------------------------------------


def latest_version(session: Session) -> int:
    """The newest version in the log (0 when empty)."""
    return int(session.scalar(select(func.max(ConfigChange.version))) or 0)


def entries_for(session: Session, data_plane_id: str, after: int, *,
                limit: int = 500) -> list[ConfigChange]:
    """The entries data plane ``data_plane_id`` needs after version ``after``, in sending
    order (module docstring: the sending rule), at most ``limit`` new ones (plus their
    replays). The caller continues from the highest version returned."""
    served_workspaces = select(Project.workspace_id).where(
        Project.data_plane_id == data_plane_id)
    served_orgs = select(Project.org_id).where(Project.data_plane_id == data_plane_id)
    new = list(session.scalars(
        select(ConfigChange).where(
            ConfigChange.version > after,
            or_(ConfigChange.data_plane_id == data_plane_id,
                (ConfigChange.project_id.is_(None)
                 & ConfigChange.workspace_id.in_(served_workspaces)),
                (ConfigChange.kind.in_(ORG_KINDS)
                 & ConfigChange.org_id.in_(served_orgs))))
        .order_by(ConfigChange.version).limit(limit)))
    out: list[ConfigChange] = []
    sent: set[int] = set()
    for change in new:
        if (change.kind == "project_assigned" and change.project_id is not None
                and change.data_plane_id == data_plane_id):
            for earlier in session.scalars(
                    select(ConfigChange).where(
                        or_(ConfigChange.project_id == change.project_id,
                            ConfigChange.kind.in_(ORG_KINDS)
                            & (ConfigChange.org_id == change.org_id)),
                        ConfigChange.version < change.version,
                        ConfigChange.kind.not_in((*ASSIGNMENT_KINDS, *NOT_REPLAYED)))
                    .order_by(ConfigChange.version)):
                if earlier.version not in sent:
                    out.append(earlier)
                    sent.add(earlier.version)
        if change.version not in sent:
            out.append(change)
            sent.add(change.version)
    return out
