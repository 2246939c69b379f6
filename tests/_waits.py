"""Bounded waits for tests: a condition polled until it holds, the test failed after a
timeout (never a sleep that hopes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def until(predicate: Callable[[], Awaitable[bool]] | Callable[[], bool],
                wait_s: float = 30.0, what: str = "condition") -> None:
    """Returns once ``predicate()`` holds; fails the test after ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {wait_s} s")
