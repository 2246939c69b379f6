"""The stages of an alert's firing: a pure state machine, one step per evaluation.

A rule's :class:`RuleState` and a measured value at a window end give the next state and
the transitions to publish (:func:`step`):

- **Firing.** Not firing, a value past the critical threshold fires ``critical`` at once
  (skipping ``warning``); past the warning threshold only, ``warning``. Firing at
  ``warning``, a value past critical escalates to ``critical``. A firing never steps back
  from critical to warning.
- **Resolution.** Firing, a value back inside both thresholds sends ``resolution`` and
  ends the firing.
- **Minimum duration** (``min_duration_s``). A stage fires only once the value has been
  past its threshold at every evaluation for at least that long (the first evaluation past
  it starts the clock: with 0, at once); the same holds for a resolution (inside both for
  that long). A value wobbling around a threshold restarts the clock each time it crosses
  back, so it neither fires nor resolves over and over.
- **No value** (no data, or a drift without a previous value): no transition; the duration
  clocks restart (the value must be seen past a threshold at consecutive evaluations).
- **Manual resolve.** A rule the control plane marked ``resolved`` later than the firing's
  last transition (``POST .../resolve``) ends the firing with no notification; a new firing
  needs the value to come back inside both thresholds first and then cross again (else the
  next evaluation would re-open what the person just closed).
- **Changed condition** (its digest differs): the firing, if any, goes on (it resolves under
  the new condition), the duration clocks restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from apiary.dataplane.alerts.rules import AlertRule, Level

StageName = Literal["warning", "critical", "resolution"]


@dataclass(frozen=True, slots=True)
class Transition:
    """One transition to publish (a notification unless muted, and an activity)."""

    alert_id: str
    project_id: str
    stage: StageName
    #: ``triggered`` (warning, critical) or ``resolved``.
    state: Literal["triggered", "resolved"]
    value: float | None
    threshold: float | None
    window_s: int
    window_end: int
    muted: bool
    #: When it happened (unix seconds, this data plane's clock).
    at: float

    def as_dict(self) -> dict[str, Any]:
        return {"alert_id": self.alert_id, "project_id": self.project_id,
                "stage": self.stage, "state": self.state, "value": self.value,
                "threshold": self.threshold, "window_s": self.window_s,
                "window_end": self.window_end, "muted": self.muted, "at": self.at}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Transition:
        return cls(alert_id=str(raw["alert_id"]), project_id=str(raw["project_id"]),
                   stage=raw["stage"], state=raw["state"],
                   value=None if raw.get("value") is None else float(raw["value"]),
                   threshold=None if raw.get("threshold") is None
                   else float(raw["threshold"]),
                   window_s=int(raw["window_s"]), window_end=int(raw["window_end"]),
                   muted=bool(raw.get("muted")), at=float(raw["at"]))


@dataclass(frozen=True, slots=True)
class RuleState:
    """What the evaluator remembers of one rule between evaluations (persisted)."""

    #: The firing's stage; None when not firing.
    stage: Level | None = None
    #: Unix seconds (wall clock) of the firing's last triggered transition.
    stage_at: float | None = None
    #: Window end since which the value has been past each threshold, at every evaluation.
    warning_since: int | None = None
    critical_since: int | None = None
    #: Window end since which the value has been inside both thresholds.
    inside_since: int | None = None
    #: After a manual resolve: no new firing until the value has been inside.
    rearm: bool = False
    condition_key: str = ""
    #: The last window end evaluated (a repeat of it is skipped).
    last_window_end: int | None = None
    last_value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "stage_at": self.stage_at,
                "warning_since": self.warning_since, "critical_since": self.critical_since,
                "inside_since": self.inside_since, "rearm": self.rearm,
                "condition_key": self.condition_key, "last_window_end": self.last_window_end,
                "last_value": self.last_value}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RuleState:
        def opt_int(key: str) -> int | None:
            return None if raw.get(key) is None else int(raw[key])

        stage = raw.get("stage")
        return cls(stage=stage if stage in ("warning", "critical") else None,
                   stage_at=None if raw.get("stage_at") is None else float(raw["stage_at"]),
                   warning_since=opt_int("warning_since"),
                   critical_since=opt_int("critical_since"),
                   inside_since=opt_int("inside_since"), rearm=bool(raw.get("rearm")),
                   condition_key=str(raw.get("condition_key") or ""),
                   last_window_end=opt_int("last_window_end"),
                   last_value=None if raw.get("last_value") is None
                   else float(raw["last_value"]))


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one evaluation: the next state and what to publish."""

    state: RuleState
    transitions: tuple[Transition, ...] = field(default=())
    #: True when a manual resolve closed the firing (nothing is published).
    manually_resolved: bool = False


def _manually_resolved(rule: AlertRule, state: RuleState) -> bool:
    if state.stage is None or rule.evaluation_state != "resolved":
        return False
    if rule.state_changed_at is None:
        return False
    return state.stage_at is None or rule.state_changed_at.timestamp() > state.stage_at


def step(rule: AlertRule, state: RuleState, value: float | None, window_end: int,
         now: datetime) -> Step:
    """The next state of ``rule`` after measuring ``value`` over the window ending at
    ``window_end`` (module docstring). ``now`` stamps a triggered transition."""
    manual = _manually_resolved(rule, state)
    if manual:
        state = replace(state, stage=None, stage_at=None, rearm=True)
    if state.condition_key != rule.condition_key:
        state = replace(state, condition_key=rule.condition_key, warning_since=None,
                        critical_since=None, inside_since=None)
    state = replace(state, last_window_end=window_end, last_value=value)
    if value is None:
        return Step(replace(state, warning_since=None, critical_since=None, inside_since=None),
                    manually_resolved=manual)

    def since(level: Level, previous: int | None) -> int | None:
        threshold = rule.threshold(level)
        if threshold is None or not threshold.past(value):
            return None
        return window_end if previous is None else previous

    warning_since = since("warning", state.warning_since)
    critical_since = since("critical", state.critical_since)
    inside = warning_since is None and critical_since is None
    inside_since = (window_end if state.inside_since is None else state.inside_since) \
        if inside else None
    state = replace(state, warning_since=warning_since, critical_since=critical_since,
                    inside_since=inside_since)
    if inside and state.rearm:
        state = replace(state, rearm=False)

    def held(start: int | None) -> bool:
        return start is not None and window_end - start >= rule.min_duration_s

    def transition(stage: StageName, threshold: float | None) -> Transition:
        return Transition(
            alert_id=rule.alert_id, project_id=rule.project_id, stage=stage,
            state="resolved" if stage == "resolution" else "triggered", value=value,
            threshold=threshold, window_s=rule.window_s, window_end=window_end,
            muted=rule.muted, at=now.timestamp())

    critical, warning = rule.critical, rule.warning
    if state.stage is not None:
        if state.stage == "warning" and critical is not None and held(critical_since):
            return Step(replace(state, stage="critical", stage_at=now.timestamp()),
                        (transition("critical", critical.value),), manual)
        if held(inside_since):
            # The threshold of the stage it leaves.
            left = rule.threshold(state.stage) or warning or critical
            return Step(replace(state, stage=None, stage_at=None),
                        (transition("resolution", None if left is None else left.value),),
                        manual)
        return Step(state, (), manual)
    if state.rearm:
        return Step(state, (), manual)
    if critical is not None and held(critical_since):
        return Step(replace(state, stage="critical", stage_at=now.timestamp()),
                    (transition("critical", critical.value),), manual)
    if warning is not None and held(warning_since):
        return Step(replace(state, stage="warning", stage_at=now.timestamp()),
                    (transition("warning", warning.value),), manual)
    return Step(state, (), manual)


__all__ = ["RuleState", "StageName", "Step", "Transition", "step"]
