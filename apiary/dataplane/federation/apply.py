"""Applying the control plane's config push on this data plane (docs/architecture.md,
"Federation"; the wire: ``proto/apiary/federation/v1/federation.proto``).

Each :class:`Change` is the complete state of one object (or its deletion), so applying one
twice changes nothing, and applying a sequence in version order leaves the final state
whatever was applied before (the control plane replays a project's earlier entries, with
their original versions, when it assigns the project). Where each kind goes:

- ``metric`` (the control plane's evaluator read model: id, name, type, enabled,
  deployed_version, versions): into the project's document ``metric.<project>`` of the
  ``federation-config`` bucket, then the project's online metrics are recomputed from it into
  ``evaluator-definitions`` (:class:`~apiary.dataplane.evaluation.definitions.DefinitionStore`),
  which the writers read. LLM judges are applied as pushed: the control plane checked
  ``proxy:use`` when they were deployed.
- ``alert_rule``, ``prompt``: ``<kind>.<project>.<object>`` in ``federation-config``, for later
  readers (alerts, prompts served locally).
- ``key_revoked``: recorded as ``key_revoked.<key id>`` and announced on
  :data:`~apiary.dataplane.replica.federation_state.KEY_REVOKED_SUBJECT`, so every replica
  forgets the key at once (the auth cache cap remains the guarantee).
- ``notification_channel`` (an org's channel, secrets in the clear): sealed with this data
  plane's envelope (``APIARY_DP_ENVELOPE_KEY``) and stored by
  :func:`~apiary.dataplane.notifications.channels.channel_entry` under
  ``notification_channel.<org>.<channel>`` in ``federation-config``, where the notifier
  reads it; a deletion deletes the key. The bucket never holds a channel's secret in the
  clear.
- ``notification_test``: publishes a ``test`` message to ``notifications.<org>.<project>``
  restricted to the channel (``channel_ids``), under ``Nats-Msg-Id`` ``test.<test id>``, so
  a re-applied entry is one message (within JetStream's duplicate window). A request older
  than :data:`TEST_MAX_AGE_S` (a data plane catching up) or that JetStream refuses is logged
  and dropped: a test never holds up the config stream; the user asks again.
- ``project_assigned``: the project joins the served set (``projects`` in
  ``federation-state``); ``project_unassigned``/``project_revoked``: it leaves it, and its
  online metrics stop (they come back with the replay of a later assignment).

**Durable when it returns.** :meth:`ConfigApplier.apply` returns once the change and then the
applied version (``applied`` = the highest version applied, never lowered) are written to
file-backed JetStream buckets, which the embedded nats-server fsyncs before acknowledging.
The controller acknowledges the version to the control plane only after that.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from apiary.dataplane.evaluation.definitions import DefinitionStore
from apiary.dataplane.evaluation.metrics import AUTO_KINDS, MetricSpec, online_specs
from apiary.dataplane.evaluation.proxy.envelope import Envelope, envelope_from_settings
from apiary.dataplane.notifications.channels import channel_entry, channel_key
from apiary.dataplane.notifications.message import TestNotification, publish_notification
from apiary.dataplane.replica.federation_state import (
    APPLIED_KEY,
    CONFIG_BUCKET,
    KEY_REVOKED_SUBJECT,
    PROJECTS_KEY,
    STATE_BUCKET,
    read_json,
)
from apiary.errors import InvalidRequest, QueueError
from apiary.settings import ApiarySettings

log = logging.getLogger("apiary.dataplane.federation")

KINDS = frozenset({"metric", "alert_rule", "prompt", "key_revoked", "project_assigned",
                   "project_unassigned", "project_revoked", "notification_channel",
                   "notification_test"})
#: A test request older than this when it arrives (a data plane catching up) is not sent.
TEST_MAX_AGE_S = 600.0
_TOKEN = re.compile(r"^[A-Za-z0-9_=-]{1,80}$")


def key_token(value: str) -> str:
    """``value`` as one token of a key-value key: itself when it is a valid one, else a
    hash (ids are opaque)."""
    if _TOKEN.match(value):
        return value
    return "_h_" + hashlib.sha256(value.encode()).hexdigest()[:40]


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the control plane's config log (``ConfigChange``), decoded."""

    version: int
    kind: str
    project_id: str
    object_id: str
    deleted: bool
    payload: dict[str, Any] | None

    @classmethod
    def of(cls, version: int, kind: str, project_id: str, object_id: str, deleted: bool,
           payload: bytes) -> Change:
        """Decode a ``ConfigChange``; a payload that is not a JSON object counts as none."""
        try:
            doc = orjson.loads(payload) if payload else None
        except orjson.JSONDecodeError:
            log.error("a config change's payload is not JSON; applied as empty",
                      extra={"kind": kind, "config_version": version})
            doc = None
        return cls(int(version), kind, project_id, object_id, bool(deleted),
                   doc if isinstance(doc, dict) else None)


async def _bucket(js: JetStreamContext, name: str, description: str,
                  settings: ApiarySettings) -> KeyValue:
    try:
        return await js.key_value(name)
    except (BucketNotFoundError, NotFoundError):
        pass
    config = KeyValueConfig(bucket=name, description=description, history=1,
                            storage=StorageType.FILE, replicas=settings.nats_replicas)
    try:
        return await js.create_key_value(config)
    except Exception:  # a concurrent creator may have won
        return await js.key_value(name)


async def open_state(js: JetStreamContext, settings: ApiarySettings) -> KeyValue:
    """The ``federation-state`` bucket, created if needed."""
    return await _bucket(js, STATE_BUCKET, "Apiary: the federation controller's state",
                         settings)


def _metric_specs(metrics: Mapping[str, Mapping[str, Any]]) -> list[MetricSpec]:
    """The online specs of a project's pushed metrics. Accepts the evaluator read model
    (``versions`` + ``deployed_version``) and, for a payload that is already one version,
    a spec with ``enabled``/``deployed`` flags. A metric that cannot be read is skipped
    (logged), never the project's others."""
    specs: list[MetricSpec] = []
    for metric_id, m in metrics.items():
        try:
            specs.extend(_online(m))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("a pushed metric cannot run online; skipped",
                      extra={"metric_id": metric_id, "error": repr(exc)})
    return specs


def _online(m: Mapping[str, Any]) -> list[MetricSpec]:
    if "versions" in m:
        return online_specs([m])
    if not m.get("enabled", True) or not m.get("deployed", True):
        return []
    if m.get("kind") not in AUTO_KINDS or float(m.get("sampling_pct", 100.0)) <= 0:
        return []
    return [{
        "id": str(m["id"]), "name": str(m["name"]), "kind": str(m["kind"]),
        "version": int(m["version"]), "code": m.get("code"),
        "criteria": m.get("criteria"), "return_type": str(m.get("return_type") or "float"),
        "sampling_pct": float(m.get("sampling_pct", 100.0)),
        "filters": list(m.get("filters") or []),
        "model_params": dict(m.get("model_params") or {}),
    }]


class ConfigApplier:
    """Applies :class:`Change` s durably and idempotently (module docstring). One per
    controller; not safe for concurrent :meth:`apply` calls (the stream is sequential)."""

    def __init__(self, nc: Client, settings: ApiarySettings, state: KeyValue,
                 config: KeyValue, definitions: DefinitionStore, *,
                 envelope: Envelope | None = None) -> None:
        self._nc = nc
        self._settings = settings
        self._envelope = envelope
        self.state = state
        self.config = config
        self._definitions = definitions
        self.applied = 0  # the last value read or written of ``applied``

    @classmethod
    async def open(cls, nc: Client, settings: ApiarySettings) -> ConfigApplier:
        js = nc.jetstream()
        state = await open_state(js, settings)
        config = await _bucket(js, CONFIG_BUCKET,
                               "Apiary: configuration pushed by the control plane", settings)
        applier = cls(nc, settings, state, config, await DefinitionStore.open(js, settings))
        await applier.applied_version()
        return applier

    async def applied_version(self) -> int:
        """The highest config version applied durably (0: none)."""
        doc = await read_json(self.state, APPLIED_KEY)
        self.applied = int((doc or {}).get("version") or 0)
        return self.applied

    async def served_projects(self) -> dict[str, dict[str, Any]]:
        doc = await read_json(self.state, PROJECTS_KEY) or {}
        projects = doc.get("projects") or {}
        return dict(projects) if isinstance(projects, dict) else {}

    async def set_projects(self, projects: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the served set (the Welcome's list, which is authoritative)."""
        await self._put(self.state, PROJECTS_KEY,
                        {"projects": {k: dict(v) for k, v in projects.items()},
                         "updated_at": time.time()})

    async def apply(self, change: Change) -> int:
        """Apply ``change`` and record it; the applied version afterwards. An unknown kind
        (a newer control plane) or a payload that cannot be applied (it never will be) is
        logged and skipped, never a reason to stop the stream; NATS failing is raised (the
        stream ends, and the change comes again after the reconnect)."""
        try:
            await self._apply(change)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("config change could not be applied; skipped", extra={
                "kind": change.kind, "project_id": change.project_id,
                "object_id": change.object_id, "config_version": change.version,
                "error": repr(exc)})
        if change.version > self.applied:
            await self._put(self.state, APPLIED_KEY, {"version": change.version,
                                                      "at": time.time()})
            self.applied = change.version
        log.info("config change applied", extra={
            "kind": change.kind, "project_id": change.project_id,
            "object_id": change.object_id, "config_version": change.version,
            "deleted": change.deleted})
        return self.applied

    async def _apply(self, change: Change) -> None:
        if change.kind == "metric":
            await self._metric(change)
        elif change.kind in ("alert_rule", "prompt"):
            key = (f"{change.kind}.{key_token(change.project_id or '_')}."
                   f"{key_token(change.object_id)}")
            if change.deleted:
                await self.config.delete(key)
            else:
                await self._put(self.config, key, {"version": change.version,
                                                   "project_id": change.project_id,
                                                   "object": change.payload})
        elif change.kind == "key_revoked":
            await self._key_revoked(change)
        elif change.kind == "notification_channel":
            await self._notification_channel(change)
        elif change.kind == "notification_test":
            await self._notification_test(change)
        elif change.kind == "project_assigned":
            projects = await self.served_projects()
            projects[change.project_id] = dict(change.payload or {})
            await self.set_projects(projects)
        elif change.kind in ("project_unassigned", "project_revoked"):
            projects = await self.served_projects()
            projects.pop(change.project_id, None)
            await self.set_projects(projects)
            await self._set_metrics(change.project_id, {})
        else:
            log.warning("unknown config change kind skipped",
                        extra={"kind": change.kind, "config_version": change.version})

    async def project_metrics(self, project_id: str) -> dict[str, dict[str, Any]]:
        doc = await read_json(self.config, f"metric.{key_token(project_id)}") or {}
        metrics = doc.get("metrics") or {}
        return dict(metrics) if isinstance(metrics, dict) else {}

    async def _metric(self, change: Change) -> None:
        metrics = await self.project_metrics(change.project_id)
        payload = change.payload or {}
        evaluator = payload.get("evaluator", payload)
        if change.deleted or not isinstance(evaluator, dict) or not evaluator:
            metrics.pop(change.object_id, None)
        else:
            metrics[change.object_id] = {**evaluator, "id": evaluator.get("id", change.object_id)}
        await self._set_metrics(change.project_id, metrics)

    async def _set_metrics(self, project_id: str,
                           metrics: Mapping[str, Mapping[str, Any]]) -> None:
        key = f"metric.{key_token(project_id)}"
        if metrics:
            await self._put(self.config, key, {"project_id": project_id,
                                               "metrics": dict(metrics)})
        else:
            await self.config.delete(key)
        await self._definitions.put(project_id, _metric_specs(metrics))

    async def _key_revoked(self, change: Change) -> None:
        payload = change.payload or {}
        await self._put(self.config, f"key_revoked.{key_token(change.object_id)}",
                        {"version": change.version, **payload})
        notice = {"key_id": payload.get("key_id", change.object_id),
                  "key_sha256": payload.get("key_sha256")}
        await self._nc.publish(KEY_REVOKED_SUBJECT, orjson.dumps(notice))
        await self._nc.flush()

    def envelope(self) -> Envelope:
        """This data plane's envelope (loaded at first use: a data plane that never gets a
        channel needs no key)."""
        if self._envelope is None:
            self._envelope = envelope_from_settings(self._settings)
        return self._envelope

    async def _notification_channel(self, change: Change) -> None:
        payload = change.payload or {}
        if change.deleted:
            org_id = str(payload["org_id"])
            await self.config.delete(channel_key(org_id, str(payload.get("id")
                                                              or change.object_id)))
            return
        try:
            key, value = channel_entry(payload, self.envelope())
        except InvalidRequest as exc:  # it never will be a channel: skipped (apply)
            raise ValueError(str(exc)) from None
        await self.config.put(key, value)

    async def _notification_test(self, change: Change) -> None:
        payload = change.payload or {}
        requested = datetime.fromisoformat(str(payload["requested_at"]))
        age = time.time() - requested.timestamp()
        fields = {"test_id": payload.get("test_id"), "channel_id": payload.get("channel_id"),
                  "org_id": payload.get("org_id"), "config_version": change.version}
        if age > TEST_MAX_AGE_S:
            log.warning("a notification test request is too old; not sent",
                        extra={**fields, "age_s": round(age)})
            return
        message = TestNotification(
            org_id=str(payload["org_id"]), workspace_id=payload.get("workspace_id"),
            project_id=payload.get("project_id") or change.project_id or None,
            test_id=str(payload["test_id"]), channel_ids=(str(payload["channel_id"]),))
        try:
            await publish_notification(self._nc.jetstream(), message)
        except QueueError as exc:
            log.error("a notification test could not be published; dropped",
                      extra={**fields, "error": str(exc)})
            return
        log.info("notification test published", extra=fields)

    @staticmethod
    async def _put(kv: KeyValue, key: str, doc: Mapping[str, Any]) -> None:
        await kv.put(key, orjson.dumps(doc))


__all__ = ["KINDS", "Change", "ConfigApplier", "key_token", "open_state"]
