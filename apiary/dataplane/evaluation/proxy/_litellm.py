"""LiteLLM, loaded once, off the event loop, and configured for a server.

Importing LiteLLM takes seconds (holding the GIL), so it is never imported with the app: the
first proxy call of a process loads it in a worker thread (:func:`litellm`, :func:`warm_up`).
It is configured so that it never reaches the network on its own (the bundled price map, not
a download), never prints debugging banners to stdout, never drops parameters silently, and
sends every request through httpx (never its aiohttp transport), where the outbound-URL
policy checks each connection (:mod:`apiary.dataplane.evaluation.proxy._egress`).

The module is handled as ``Any``: LiteLLM's API is wide and dynamic, and every value that
comes back from it is validated where it is used (:mod:`apiary.dataplane.evaluation.proxy._calls`).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import threading
from typing import Any

_lock = threading.Lock()
_module: Any = None


def load() -> Any:
    """The configured ``litellm`` module (blocking on first use)."""
    global _module
    if _module is None:
        with _lock:
            if _module is None:
                # Before the import: LiteLLM fetches its price map at import time otherwise.
                os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
                module: Any = importlib.import_module("litellm")
                module.suppress_debug_info = True
                module.drop_params = False
                # aiohttp connects outside httpcore, where the egress guard cannot see it.
                module.disable_aiohttp_transport = True
                _module = module
    return _module


async def litellm() -> Any:
    """The configured ``litellm`` module, loaded in a worker thread if needed."""
    if _module is not None:
        return _module
    return await asyncio.to_thread(load)


async def warm_up() -> None:
    """Load LiteLLM now, so that the first proxy call does not wait for the import."""
    await litellm()


def known_providers() -> frozenset[str]:
    """The provider names LiteLLM routes to (``openai``, ``anthropic``, ...)."""
    return frozenset(str(getattr(p, "value", p)) for p in load().provider_list)
