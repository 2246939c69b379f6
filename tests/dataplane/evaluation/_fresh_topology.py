"""A fresh JetStream topology for each evaluation test, and a wait for what it leads to.

Test modules import these by name; fixtures stay in ``conftest.py``, which pytest loads
itself (a test module never imports a ``conftest``: with several ``conftest.py`` on
``sys.path`` the name resolves to whichever was loaded last).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.js.errors import NotFoundError

from apiary.queue import ensure_topology
from apiary.settings import ApiarySettings

__all__ = ["fresh_topology", "until"]


async def fresh_topology(nc: Client, settings: ApiarySettings) -> None:
    """Streams and consumers as ``settings`` make them, with no message of earlier tests."""
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, settings)


async def until(predicate: Callable[[], Awaitable[bool]], wait_s: float = 30.0,
                what: str = "condition") -> None:
    """Returns once ``predicate()`` holds; fails the test after ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {wait_s} s")
