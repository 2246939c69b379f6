"""The scaling policy: sizes from backlogs, within bounds, with up and down delays."""

from __future__ import annotations

import pytest

from apiary.dataplane.scaling import evaluator_policy, writer_policy
from apiary.dataplane.scaling.policy import Hysteresis, ScalingPolicy
from apiary.errors import ConfigurationError
from apiary.settings import ApiarySettings

POLICY = ScalingPolicy(min_size=1, max_size=4, backlog_per_actor=10, up_delay_s=3.0,
                       down_delay_s=10.0)


def _run(policy: ScalingPolicy, backlogs: list[int], start: int = 1,
         step_s: float = 1.0) -> list[int]:
    """Sizes decided once a second for the given backlogs, applying each decision."""
    hysteresis = Hysteresis(policy, started_at=0.0)
    size, sizes = start, []
    for i, backlog in enumerate(backlogs):
        size = hysteresis.decide(i * step_s, backlog, size)
        sizes.append(size)
    return sizes


def test_wanted_size_is_the_backlog_over_the_target_within_bounds() -> None:
    assert [POLICY.wanted(b) for b in (0, 1, 10, 11, 35, 1000, -5)] == [1, 1, 1, 2, 4, 4, 1]


def test_a_sustained_backlog_grows_the_pool_after_the_up_delay() -> None:
    sizes = _run(POLICY, [100] * 8)
    assert sizes == [1, 1, 1, 4, 4, 4, 4, 4]


def test_growth_goes_to_the_least_size_wanted_during_the_delay() -> None:
    sizes = _run(POLICY, [0, 0, 0, 25, 25, 25, 100, 100, 100, 100])
    assert sizes[5] == 1
    assert sizes[6] == 3
    assert sizes[-1] == 4


def test_a_short_burst_changes_nothing() -> None:
    sizes = _run(POLICY, [0, 0, 0, 100, 100, 0, 0, 0, 100, 0, 0, 0])
    assert set(sizes) == {1}


def test_the_pool_shrinks_only_after_the_down_delay_and_a_lull_does_not_shrink_it() -> None:
    backlogs = [100] * 5 + [0] * 5 + [100] + [0] * 14
    sizes = _run(POLICY, backlogs)
    assert sizes[4] == 4
    assert sizes[:16] == [1, 1, 1, 4, 4] + [4] * 11  # the 100 at t=10 holds it up
    assert sizes[-1] == 1
    assert 4 in sizes[15:20]
    assert sizes.index(1, 5) == 21


def test_bounds_changed_under_the_pool_are_obeyed_at_once() -> None:
    hysteresis = Hysteresis(POLICY, started_at=0.0)
    assert hysteresis.decide(0.0, 0, 9) == 4
    assert hysteresis.decide(1.0, 0, 0) == 1


def test_policies_from_settings() -> None:
    settings = ApiarySettings(evaluator_min=2, evaluator_max=6, evaluator_backlog_per_actor=7,
                              scale_up_delay_s=1, scale_down_delay_s=2)
    policy = evaluator_policy(settings)
    assert (policy.min_size, policy.max_size, policy.backlog_per_actor) == (2, 6, 7)
    assert writer_policy(settings) is None  # writers do not scale unless told
    writers = writer_policy(ApiarySettings(writer_count=2, writer_max=5))
    assert writers is not None
    assert (writers.min_size, writers.max_size) == (2, 5)
    with pytest.raises(ConfigurationError):
        evaluator_policy(ApiarySettings(evaluator_min=3, evaluator_max=2))
    with pytest.raises(ConfigurationError):
        writer_policy(ApiarySettings(writer_count=3, writer_max=2))
    with pytest.raises(ConfigurationError):
        ScalingPolicy(min_size=0, max_size=0, backlog_per_actor=1, up_delay_s=0,
                      down_delay_s=0)
