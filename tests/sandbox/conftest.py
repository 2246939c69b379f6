"""Sandbox pools shared by the sandbox tests (a zygote preloads numpy, pandas and
scikit-learn once per pool, which takes seconds; the pools live for the session)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from apiary.sandbox import SandboxLimits, SandboxPool

TRIVIAL = "def evaluate(event):\n    return len(event['outputs']['content'])\n"
EVENT = {"event_type": "model", "inputs": {"q": "hi"}, "outputs": {"content": "hello"},
         "metadata": {"m": 1}, "feedback": {"ground_truth": "hello"}}

# CPU 2 s, so busy loops end by the kernel's limit; a wall clock far above it, so a loaded
# machine still reaches the CPU limit first; small memory and output limits, so bombs end
# fast.
LIMITS = SandboxLimits(cpu_s=2, timeout_s=60, memory_mb=256, max_output_bytes=16 * 1024,
                       max_code_bytes=8 * 1024)


async def assert_healthy(pool: SandboxPool) -> None:
    """The pool still scores a normal metric."""
    result = await pool.run(TRIVIAL, EVENT)
    assert result.score == 5


@pytest.fixture(scope="session")
async def pool() -> AsyncIterator[SandboxPool]:
    async with SandboxPool(2, LIMITS) as p:
        yield p


@pytest.fixture(scope="session")
async def timeout_pool() -> AsyncIterator[SandboxPool]:
    """Wall clock 1.5 s far below a 30 s CPU limit: the parent's timeout acts first."""
    limits = SandboxLimits(cpu_s=30, timeout_s=1.5, memory_mb=256)
    async with SandboxPool(1, limits) as p:
        yield p
