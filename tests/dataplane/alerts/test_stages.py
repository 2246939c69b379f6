"""The stages state machine on its own (no servers): firing, escalation, resolution, the
minimum duration, no data, manual resolve, a changed condition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from apiary.dataplane.alerts.rules import AlertRule, parse_rule
from apiary.dataplane.alerts.stages import RuleState, Transition, step

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def rule(**condition: Any) -> AlertRule:
    state = {k: condition.pop(k) for k in ("muted", "paused", "evaluation_state",
                                           "state_changed_at") if k in condition}
    base = {"type": "aggregate", "field": "error_rate", "window_s": 60,
            "warning": {"op": ">=", "value": 0.5}, "critical": {"op": ">=", "value": 0.9},
            "min_duration_s": 0, **condition}
    return parse_rule({"version": 1, "project_id": "p1", "object": {
        "id": "a1", "project_id": "p1", "name": "errors", "condition": base, **state}})


def run(r: AlertRule, values: list[float | None], *, every: int = 60,
        state: RuleState | None = None) -> tuple[RuleState, list[tuple[int, str]]]:
    """Step through ``values`` (one per evaluation, ``every`` s apart); the final state and
    the transitions as (evaluation index, stage)."""
    state = state or RuleState()
    out: list[tuple[int, str]] = []
    for i, value in enumerate(values):
        result = step(r, state, value, 1_000 + i * every, NOW + timedelta(seconds=i * every))
        state = result.state
        out.extend((i, t.stage) for t in result.transitions)
    return state, out


def test_warning_then_critical_then_one_resolution() -> None:
    state, out = run(rule(), [0.1, 0.6, 0.7, 0.95, 0.95, 0.2, 0.1])
    assert out == [(1, "warning"), (3, "critical"), (5, "resolution")]
    assert state.stage is None


def test_critical_at_once_skips_warning() -> None:
    _, out = run(rule(), [0.95, 0.6, 0.0])
    assert out == [(0, "critical"), (2, "resolution")]  # no step back to warning


def test_the_transition_carries_value_threshold_and_window() -> None:
    result = step(rule(), RuleState(), 0.6, 1_200, NOW)
    [t] = result.transitions
    assert t == Transition(alert_id="a1", project_id="p1", stage="warning", state="triggered",
                           value=0.6, threshold=0.5, window_s=60, window_end=1_200,
                           muted=False, at=NOW.timestamp())
    [r] = step(rule(), result.state, 0.1, 1_260, NOW).transitions
    assert (r.stage, r.state, r.threshold) == ("resolution", "resolved", 0.5)
    assert Transition.from_dict(t.as_dict()) == t
    assert RuleState.from_dict(result.state.as_dict()) == result.state


def test_lower_is_worse_thresholds() -> None:
    r = rule(field="metrics.grounded", aggregation="share_true",
             warning={"op": "<", "value": 0.8}, critical={"op": "<", "value": 0.5})
    _, out = run(r, [0.9, 0.7, 0.4, 0.85])
    assert out == [(1, "warning"), (2, "critical"), (3, "resolution")]


def test_only_a_critical_threshold() -> None:
    r = rule(warning=None)
    _, out = run(r, [0.6, 0.95, 0.6, 0.1])
    assert out == [(1, "critical"), (2, "resolution")]  # 0.6 is inside the only threshold


def test_min_duration_keeps_a_wobbling_value_from_flapping() -> None:
    r = rule(min_duration_s=120)
    wobble = [0.6, 0.4, 0.6, 0.4, 0.6, 0.4, 0.6, 0.4]
    state, out = run(r, wobble)
    assert out == []
    assert state.stage is None
    # Past the threshold at three consecutive evaluations (0, 60, 120 s): it fires at 120 s.
    state, out = run(r, [0.6, 0.6, 0.6, 0.6])
    assert out == [(2, "warning")]
    # Firing, a wobble back inside does not resolve; staying inside for 120 s does.
    state, out = run(r, [0.4, 0.6, 0.4, 0.4, 0.4], state=state)
    assert out == [(4, "resolution")]


def test_without_min_duration_a_wobble_flaps() -> None:
    """The control for the test above: the guard is what stops it."""
    _, out = run(rule(), [0.6, 0.4, 0.6, 0.4])
    assert [s for _, s in out] == ["warning", "resolution", "warning", "resolution"]


def test_no_data_makes_no_transition_and_restarts_the_clock() -> None:
    r = rule(min_duration_s=60)
    state, out = run(r, [0.6, None, 0.6, None, 0.6, 0.6])
    assert out == [(5, "warning")]
    state, out = run(r, [None, None], state=state)
    assert out == []
    assert state.stage == "warning"


def test_manual_resolve_closes_the_firing_until_a_new_crossing() -> None:
    state, out = run(rule(), [0.6])
    assert out == [(0, "warning")]
    assert state.stage_at is not None
    later = datetime.fromtimestamp(state.stage_at + 30, UTC).isoformat()
    resolved = rule(evaluation_state="resolved", state_changed_at=later)
    result = step(resolved, state, 0.7, 2_000, NOW + timedelta(seconds=90))
    assert result.manually_resolved
    assert result.transitions == ()
    assert result.state.stage is None
    assert result.state.rearm
    # Still past the threshold: no new firing; back inside, then past again: a new one.
    state, out = run(resolved, [0.7, 0.2, 0.7], state=result.state)
    assert out == [(2, "warning")]


def test_an_echo_of_its_own_report_is_not_a_manual_resolve() -> None:
    state, _ = run(rule(), [0.6])
    assert state.stage_at is not None
    # The control plane echoes the triggered state (at = the transition's time)...
    echo = rule(evaluation_state="triggered",
                state_changed_at=datetime.fromtimestamp(state.stage_at, UTC).isoformat())
    assert not step(echo, state, 0.6, 2_000, NOW).manually_resolved
    # ... and an older resolution (of an earlier firing) arriving late changes nothing.
    old = rule(evaluation_state="resolved",
               state_changed_at=datetime.fromtimestamp(state.stage_at - 100, UTC).isoformat())
    result = step(old, state, 0.6, 2_000, NOW)
    assert not result.manually_resolved
    assert result.state.stage == "warning"


def test_a_changed_condition_keeps_the_firing_and_restarts_the_clocks() -> None:
    state, _out = run(rule(), [0.6])
    assert state.stage == "warning"
    changed = rule(warning={"op": ">=", "value": 0.8}, critical={"op": ">=", "value": 0.95},
                   min_duration_s=60)
    assert changed.condition_key != rule().condition_key
    result = step(changed, state, 0.9, 2_000, NOW)
    assert result.state.stage == "warning"
    assert result.transitions == ()
    assert result.state.warning_since == 2_000  # restarted under the new condition
    inside = step(changed, result.state, 0.1, 2_060, NOW)
    assert inside.transitions == ()  # inside for 0 s of the 60 s it needs
    resolved = step(changed, inside.state, 0.1, 2_120, NOW)
    assert [(t.stage, t.threshold) for t in resolved.transitions] == [("resolution", 0.8)]


def test_muted_transitions_say_so() -> None:
    [t] = step(rule(muted=True), RuleState(), 0.95, 1_000, NOW).transitions
    assert t.muted
    assert t.stage == "critical"
