"""Sandbox pools shared by the sandbox tests (a zygote preloads numpy, pandas and
scikit-learn once per pool, which takes seconds; the pools live for the session)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _sandbox_baseline import LIMITS

from apiary.dataplane.evaluation.sandbox import SandboxLimits, SandboxPool


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
