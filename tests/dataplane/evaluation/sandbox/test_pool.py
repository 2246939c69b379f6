"""The pool scores metrics the way metric authors write them, and keeps its workers."""

from __future__ import annotations

import asyncio

import pytest
from _sandbox_baseline import EVENT, TRIVIAL, assert_healthy

from apiary.dataplane.evaluation.sandbox import SandboxLimits, SandboxPool
from apiary.dataplane.evaluation.sandbox.pool import _death_error
from apiary.errors import (
    SandboxCompileError,
    SandboxError,
    SandboxResourceLimit,
    SandboxRuntimeError,
    SandboxTimeout,
    SandboxUnavailable,
)


async def test_evaluate_event_convention(pool: SandboxPool) -> None:
    result = await pool.run(TRIVIAL, EVENT)
    assert result.score == 5
    assert result.explanation is None
    assert result.duration_ms >= 0


async def test_named_parameters_convention(pool: SandboxPool) -> None:
    code = ("def metric(inputs, outputs, ground_truth, metadata):\n"
            "    return {'score': outputs['content'] == ground_truth,\n"
            "            'explanation': inputs['q'] + str(metadata['m'])}\n")
    result = await pool.run(code, EVENT)
    assert result.score is True
    assert result.explanation == "hi1"
    other = await pool.run(code, EVENT, ground_truth="bye")
    assert other.score is False


async def test_honeyhive_metric_named_after_itself(pool: SandboxPool) -> None:
    code = "def num_words(event):\n    return len(event['outputs']['content'].split())\n"
    assert (await pool.run(code, {"outputs": {"content": "a b c"}})).score == 3


async def test_honeyhive_positional_order(pool: SandboxPool) -> None:
    """HoneyHive's client-side evaluators get (outputs, inputs, ground_truth) by position."""
    code = "def exact(out, inp, gt):\n    return out['content'] == gt and inp['q'] == 'hi'\n"
    assert (await pool.run(code, EVENT)).score is True


async def test_return_shapes(pool: SandboxPool) -> None:
    async def score(expr: str) -> object:
        return (await pool.run(f"def evaluate(event):\n    return {expr}\n", EVENT)).score

    assert await score("0.25") == 0.25
    assert await score("'good'") == "good"
    assert await score("[7]") == 7
    assert await score("None") is None
    result = await pool.run("def evaluate(event):\n    return {'score': 1, 'explanation': "
                            "'why', 'tokens': 3, 'nested': [1]}\n", EVENT)
    assert (result.score, result.explanation, dict(result.extras)) == (1, "why", {"tokens": 3})
    assert result.to_metric_attrs("m") == {"m": 1, "m_explanation": "why", "m_tokens": 3}


async def test_unusable_returns(pool: SandboxPool) -> None:
    for expr in ("float('nan')", "[1, 2]", "{'score': [1]}", "10 ** 30"):
        with pytest.raises(SandboxRuntimeError, match="unusable value"):
            await pool.run(f"def evaluate(event):\n    return {expr}\n", EVENT)
    await assert_healthy(pool)


async def test_libraries(pool: SandboxPool) -> None:
    code = """
import json, math, re, statistics, difflib, datetime
from collections import Counter
import numpy as np
import pandas as pd
import jsonschema
from sklearn.metrics import f1_score
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

def evaluate(event):
    text = event['outputs']['content']
    jsonschema.validate({'a': 1}, {'type': 'object', 'required': ['a']})
    df = pd.DataFrame({'w': text.split()})
    df['n'] = df['w'].str.len()
    m = TfidfVectorizer().fit_transform([text, 'hello world'])
    return {
        'score': float(np.mean(df['n'])),
        'f1': float(f1_score([1, 0, 1], [1, 0, 0])),
        'cos': round(float(cosine_similarity(m[0], m[1])[0][0]), 3),
        'ratio': difflib.SequenceMatcher(None, text, 'help').ratio(),
        'day': datetime.datetime.strptime('2024-01-02', '%Y-%m-%d').day,
        'common': Counter(text).most_common(1)[0][0],
        'json': json.dumps({'k': statistics.mean([1, 2])}),
        'csv': df.to_csv(index=False),
    }
"""
    result = await pool.run(code, {"outputs": {"content": "hello big world"}})
    assert result.score == pytest.approx(13 / 3)
    assert result.extras["f1"] == pytest.approx(2 / 3)
    assert 0 < result.extras["cos"] < 1
    assert result.extras["day"] == 2
    assert result.extras["common"] == "l"
    assert result.extras["json"] == '{"k": 1.5}'
    assert result.extras["csv"].startswith("w,n\n")


async def test_classes_prints_and_errors(pool: SandboxPool) -> None:
    code = ("class Acc:\n    def __init__(self):\n        self.total = 0\n"
            "def evaluate(event):\n    a = Acc()\n    a.total = a.total + 2\n"
            "    print('total', a.total)\n"
            "    return a.total\n")
    result = await pool.run(code, EVENT)
    assert (result.score, result.logs) == (2, "total 2\n")
    with pytest.raises(SandboxRuntimeError) as info:
        await pool.run("def evaluate(event):\n    x = 1\n    return event['nope']\n", EVENT)
    assert info.value.context["error_type"] == "KeyError"
    assert info.value.context["line"] == 3
    assert info.value.to_body()["details"] == {"error_type": "KeyError", "line": 3}


async def test_compile_errors_fail_before_any_worker(pool: SandboxPool) -> None:
    jobs = pool.stats.jobs
    with pytest.raises(SandboxCompileError) as info:
        await pool.run("def evaluate(event):\n    return event._private\n", EVENT)
    assert info.value.status == 400
    assert pool.stats.jobs == jobs


async def test_concurrent_jobs(pool: SandboxPool) -> None:
    code = "def evaluate(event):\n    return event['n'] * 2\n"
    results = await asyncio.gather(*(pool.run(code, {"n": i}) for i in range(40)))
    assert [r.score for r in results] == [i * 2 for i in range(40)]


async def test_failures_mixed_with_good_jobs(pool: SandboxPool) -> None:
    """Killed workers do not take concurrent good jobs down with them."""
    bomb = "def evaluate(event):\n    return 'a' * 10 ** 10\n"
    good = "def evaluate(event):\n    return event['n']\n"
    outcomes = await asyncio.gather(
        *(pool.run(bomb if i % 3 == 0 else good, {"n": i}) for i in range(12)),
        return_exceptions=True)
    for i, outcome in enumerate(outcomes):
        if i % 3 == 0:
            assert isinstance(outcome, SandboxResourceLimit)
        else:
            assert not isinstance(outcome, BaseException)
            assert outcome.score == i
    await assert_healthy(pool)


async def test_isolation_keys_never_share_a_worker() -> None:
    async with SandboxPool(1, SandboxLimits(cpu_s=2, timeout_s=60)) as pool:
        await pool.run(TRIVIAL, EVENT, isolation_key="project-a")
        await pool.run(TRIVIAL, EVENT, isolation_key="project-a")
        assert (pool.stats.workers_started, pool.stats.workers_lost) == (1, 0)
        await pool.run(TRIVIAL, EVENT, isolation_key="project-b")
        assert (pool.stats.workers_started, pool.stats.workers_lost) == (2, 1)
        await pool.run(TRIVIAL, EVENT, isolation_key="project-b")
        assert pool.stats.workers_started == 2


async def test_fresh_process_per_job_and_close() -> None:
    async with SandboxPool(1, SandboxLimits(max_jobs_per_worker=1)) as pool:
        for _ in range(3):
            await assert_healthy(pool)
        assert pool.stats.workers_lost == 3
        assert pool.stats.last_fork_ms > 0
    with pytest.raises(SandboxUnavailable):
        await pool.run(TRIVIAL, EVENT)


async def test_a_busy_loop_backlog_grows_the_pool_so_a_quick_job_is_not_stuck_behind_it(
        ) -> None:
    """Issue 13 (6): one worker held by busy-loop jobs for their whole timeout made every
    other metric wait. Jobs that find every worker busy grow the pool (to ``max_size``),
    and the extra workers are given up once nothing waits."""
    busy = "def evaluate(event):\n    while True:\n        pass\n"
    limits = SandboxLimits(cpu_s=30, timeout_s=3.0, memory_mb=256)
    async with SandboxPool(1, limits, max_size=3) as pool:
        loops = [asyncio.create_task(pool.run(busy, EVENT)) for _ in range(2)]
        await asyncio.sleep(0.2)
        started = asyncio.get_running_loop().time()
        quick = await pool.run(TRIVIAL, EVENT)
        assert quick.score is not None
        assert asyncio.get_running_loop().time() - started < limits.timeout_s  # not queued
        assert pool.stats.grown == 2
        assert pool.size == 2  # the quick job gave its slot up already
        for outcome in await asyncio.gather(*loops, return_exceptions=True):
            assert isinstance(outcome, SandboxTimeout)
        assert pool.size == 1
        assert pool.stats.shrunk == 2
        await assert_healthy(pool)
        assert pool.stats.workers_started - pool.stats.workers_lost <= 2  # back to its size


async def test_cancelled_job_replaces_its_worker(timeout_pool: SandboxPool) -> None:
    lost = timeout_pool.stats.workers_lost
    task = asyncio.create_task(timeout_pool.run("def evaluate(event):\n    while True:\n"
                                                "        pass\n", EVENT))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert timeout_pool.stats.workers_lost == lost + 1
    await assert_healthy(timeout_pool)


def test_death_classification() -> None:
    limits = SandboxLimits(cpu_s=3)
    assert isinstance(_death_error({"signal": 24, "code": None}, limits), SandboxResourceLimit)
    assert _death_error({"signal": 9, "code": None}, limits).context["limit"] == "killed"
    assert _death_error({"signal": None, "code": 75}, limits).context["limit"] == "memory"
    crash = _death_error({"signal": 11, "code": None}, limits)
    assert isinstance(crash, SandboxRuntimeError)
    assert "SIGSEGV" in str(crash)
    assert isinstance(_death_error(None, limits), SandboxUnavailable)


def test_error_retryability() -> None:
    assert SandboxUnavailable.retryable
    for cls in (SandboxCompileError, SandboxTimeout, SandboxResourceLimit, SandboxRuntimeError):
        assert issubclass(cls, SandboxError)
        assert not cls.retryable
    assert SandboxCompileError.status == 400
