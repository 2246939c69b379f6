"""The alert evaluator: every ``alert_interval_s``, each alert rule of the projects this data
plane serves is measured and moved through its stages; each transition is published.

One evaluation (:meth:`AlertEvaluator.evaluate_all`) at wall-clock time ``now``:

1. the window end is ``now`` floored to the interval grid (``alert_interval_s``), so an
   evaluation repeated after a restart has the same window end, hence the same message ids;
2. the rules are read from ``federation-config`` (:func:`~.rules.read_rules`, a fresh
   snapshot each time, so a pushed change takes effect at the next evaluation); a paused
   rule is not evaluated; a rule of a project this data plane does not serve is skipped;
3. for each rule: its state is read from ``alert-state`` (:mod:`.state`); an outbox left by
   an evaluator that died is published first; a window end already evaluated is skipped;
   the value is measured (:mod:`.measure`), the next state computed (:mod:`.stages`), the
   state and the transitions written (the outbox), then each transition published — the
   notification (:data:`~.notice.Notify`: ``notifications.<org>.<project>``, message id
   ``alert.<alert>.<window end>.<stage>``; not for a muted rule) and its activity
   (:func:`~.events.publish_activity`, ``alert-activity.<org>.<project>``, also for a muted
   rule, ``muted=True``) — and the outbox cleared.

Rules are evaluated :data:`CONCURRENCY` at a time. An evaluation that outlasts the interval
delays the next one to the next grid point after it ends (grid points in between are not
evaluated: each evaluation covers the latest window).

**Exactly once.** A transition is in the durable outbox before anything is sent and leaves
it only after JetStream acknowledged both messages; its ids are stable, so a repeat is
stored once (duplicate window) and delivered once per channel (the notifier's delivery
records). A failure (ClickHouse or NATS unavailable) is logged and counted, and the rule is
tried again at the next evaluation; the other rules go on.

:meth:`AlertEvaluator.run` loops until :meth:`~AlertEvaluator.stop`; the Ray actor
:mod:`apiary.actors.alert_evaluator` runs one per data plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext

from apiary._private import metrics
from apiary.dataplane.alerts.events import AlertActivity, publish_activity, transition_event_id
from apiary.dataplane.alerts.measure import measure
from apiary.dataplane.alerts.notice import AlertNotice, Notify, events_link
from apiary.dataplane.alerts.rules import AlertRule, read_rules, served_projects
from apiary.dataplane.alerts.stages import Transition, step
from apiary.dataplane.alerts.state import StateConflict, StateStore, state_key
from apiary.settings import ApiarySettings
from apiary.store import StoreClient

log = logging.getLogger("apiary.dataplane.alerts")
#: Rules measured at once (each one or two ClickHouse queries; the chDB owner answers 8).
CONCURRENCY = 4


def window_end_at(now: float, interval_s: int) -> int:
    """``now`` floored to the evaluation grid (unix seconds)."""
    return int(now // interval_s) * interval_s


def ui_base(settings: ApiarySettings) -> str:
    """Where the web UI is: the control plane's root (``apiary up``: ``<base URL>/cp``)."""
    return (settings.control_plane_url or f"{settings.base_url}/cp").rstrip("/")


@dataclass
class EvaluatorStats:
    cycles: int = 0
    evaluated: int = 0
    no_data: int = 0
    skipped_paused: int = 0
    skipped_unserved: int = 0
    failed: int = 0
    transitions: int = 0
    notifications: int = 0
    manual_resolves: int = 0
    conflicts: int = 0
    rules: int = 0
    last_window_end: int | None = None
    last_cycle_s: float | None = None
    last_error: str | None = None
    stages: dict[str, int] = field(default_factory=dict)


class AlertEvaluator:
    """Evaluates every rule on the interval grid (module docstring). One per data plane;
    :meth:`evaluate_all` is not re-entrant (the loop calls it one at a time)."""

    def __init__(self, settings: ApiarySettings, js: JetStreamContext, store: StoreClient,
                 states: StateStore, notify: Notify, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._js = js
        self._store = store
        self._states = states
        self._notify = notify
        self._clock = clock
        self._stop = asyncio.Event()
        self._ui = ui_base(settings)
        self.stats = EvaluatorStats()

    @property
    def interval_s(self) -> int:
        return int(self._settings.alert_interval_s)

    # -- one evaluation -------------------------------------------------------------------

    async def evaluate_all(self, now: float | None = None) -> EvaluatorStats:
        """Evaluate every rule once at ``now`` (default: the clock); the running stats.
        Raises only when the rules or the served projects cannot be read (NATS down)."""
        started = time.perf_counter()
        now = self._clock() if now is None else now
        end = window_end_at(now, self.interval_s)
        rules = await read_rules(self._js)
        projects = await served_projects(self._js)
        self.stats.rules = len(rules)
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(rule: AlertRule, project: dict[str, Any]) -> None:
            async with gate:
                await self._evaluate_rule(rule, project, end, now)

        due = []
        for rule in rules:
            if rule.paused:
                self.stats.skipped_paused += 1
                metrics.inc(metrics.ALERT_EVALUATIONS, outcome="skipped_paused")
                continue
            project = projects.get(rule.project_id)
            if project is None or not project.get("org_id"):
                self.stats.skipped_unserved += 1
                log.warning("alert rule of a project this data plane does not serve; skipped",
                            extra={"alert_id": rule.alert_id, "project_id": rule.project_id})
                continue
            due.append(one(rule, project))
        await asyncio.gather(*due)
        try:
            await self.forget_deleted(rules)
        except Exception as exc:  # housekeeping only: tried again next time
            log.warning("alert state of deleted rules not cleaned up",
                        extra={"error": repr(exc)})
        self.stats.cycles += 1
        self.stats.last_window_end = end
        self.stats.last_cycle_s = time.perf_counter() - started
        return self.stats

    async def _evaluate_rule(self, rule: AlertRule, project: dict[str, Any], end: int,
                             now: float) -> None:
        started = time.perf_counter()
        fields = {"alert_id": rule.alert_id, "project_id": rule.project_id,
                  "window_end": end}
        try:
            stored = await self._states.load(rule.project_id, rule.alert_id)
            revision = stored.revision
            if stored.outbox:  # an evaluator died between writing and sending them
                await self._publish(stored.outbox, rule, project)
                revision = await self._states.save(rule.project_id, rule.alert_id,
                                                   stored.state, (), revision)
            last = stored.state.last_window_end
            if last is not None and last >= end:
                return
            measured = await measure(self._store, rule, end)
            result = step(rule, stored.state, measured.value, end,
                          datetime.fromtimestamp(now, UTC))
            if result.manually_resolved:
                self.stats.manual_resolves += 1
                log.info("alert resolved by hand; its firing is closed", extra=fields)
            if result.transitions:
                revision = await self._states.save(rule.project_id, rule.alert_id,
                                                   result.state, result.transitions, revision)
                await self._publish(result.transitions, rule, project)
            await self._states.save(rule.project_id, rule.alert_id, result.state, (), revision)
        except StateConflict:
            self.stats.conflicts += 1
            log.warning("alert state changed by another evaluator; rule skipped this time",
                        extra=fields)
            return
        except Exception as exc:  # a rule never stops the others; tried again next time
            self.stats.failed += 1
            self.stats.last_error = f"{rule.alert_id}: {exc!r}"[:500]
            metrics.inc(metrics.ALERT_EVALUATIONS, outcome="failed")
            log.error("alert rule evaluation failed", extra={**fields, "error": repr(exc)})
            return
        finally:
            metrics.observe(metrics.ALERT_EVALUATION_SECONDS, time.perf_counter() - started,
                            alert_id=rule.alert_id)
        outcome = "no_data" if measured.value is None else "evaluated"
        if measured.value is None:
            self.stats.no_data += 1
        else:
            self.stats.evaluated += 1
        metrics.inc(metrics.ALERT_EVALUATIONS, outcome=outcome)

    async def _publish(self, transitions: tuple[Transition, ...], rule: AlertRule,
                       project: dict[str, Any]) -> None:
        """Publish each transition's notification (unless muted) and activity; durable
        when it returns (raises QueueError otherwise: the outbox keeps them)."""
        org_id = str(project["org_id"])
        workspace_id = project.get("workspace_id")
        for t in transitions:
            if not t.muted:
                await self._notify(AlertNotice(
                    transition=t, alert_name=rule.name[:512], org_id=org_id,
                    workspace_id=None if workspace_id is None else str(workspace_id),
                    link=events_link(self._ui, rule, t.window_end)))
                self.stats.notifications += 1
            await publish_activity(self._js, AlertActivity(
                event_id=transition_event_id(t.alert_id, t.window_end, t.stage),
                kind="transition", org_id=org_id, project_id=t.project_id,
                alert_id=t.alert_id, stage=t.stage, state=t.state, value=t.value,
                threshold=t.threshold, window_end=t.window_end, muted=t.muted,
                at=datetime.fromtimestamp(t.at, UTC)))
            self.stats.transitions += 1
            self.stats.stages[t.stage] = self.stats.stages.get(t.stage, 0) + 1
            metrics.inc(metrics.ALERT_TRANSITIONS, stage=t.stage, muted=str(t.muted).lower())
            log.info("alert transition published", extra={
                "alert_id": t.alert_id, "project_id": t.project_id, "stage": t.stage,
                "value": t.value, "threshold": t.threshold, "window_end": t.window_end,
                "muted": t.muted})

    async def forget_deleted(self, rules: list[AlertRule]) -> int:
        """Delete the state of rules that no longer exist; how many."""
        keep = {state_key(r.project_id, r.alert_id) for r in rules}
        gone = [k for k in await self._states.keys() if k not in keep]
        for key in gone:
            await self._states.delete(key)
        return len(gone)

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """Evaluate at every grid point until :meth:`stop`; a failed evaluation is logged
        and the next one comes at the next grid point."""
        while not self._stop.is_set():
            try:
                await self.evaluate_all()
            except Exception as exc:  # NATS unavailable: try again at the next grid point
                self.stats.last_error = repr(exc)[:500]
                log.error("alert evaluation failed", extra={"error": repr(exc)})
            now = self._clock()
            wait = window_end_at(now, self.interval_s) + self.interval_s - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=max(0.05, wait))

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {"interval_s": self.interval_s, "cycles": s.cycles, "rules": s.rules,
                "evaluated": s.evaluated, "no_data": s.no_data,
                "skipped_paused": s.skipped_paused, "skipped_unserved": s.skipped_unserved,
                "failed": s.failed, "transitions": s.transitions,
                "notifications": s.notifications, "manual_resolves": s.manual_resolves,
                "conflicts": s.conflicts, "stages": dict(s.stages),
                "last_window_end": s.last_window_end, "last_cycle_s": s.last_cycle_s,
                "last_error": s.last_error}


__all__ = ["AlertEvaluator", "EvaluatorStats", "ui_base", "window_end_at"]
