"""The outbound-URL policy for connections LiteLLM opens itself.

LiteLLM builds its own HTTP clients, per provider family and cached across calls (the OpenAI
SDK's client for OpenAI-compatible providers, its ``AsyncHTTPHandler`` for the others, an
aiohttp transport by default), and a ``client=`` argument of the wrong type for a provider
is silently replaced by one of its own. Handing it an :class:`~apiary.outbound.OutboundPolicy`
client per call would therefore protect only the providers whose code path was checked by
hand. Instead the check sits where every one of those clients connects:

- :func:`install` wraps ``connect_tcp`` of httpcore's socket backends (sync and anyio), the
  layer under every httpx client. Outside :func:`guarded` the wrapper does nothing at all.
- Inside ``with guarded(policy):`` (a context variable: the current task, the tasks it
  starts and the worker threads LiteLLM runs with a copy of its context), every new TCP
  connection resolves the host itself, refuses when any address breaks ``policy``
  (:meth:`~apiary.outbound.OutboundPolicy.vetted_addresses`) and connects to the address it
  checked, so a DNS answer that changed since ``api_base`` was accepted cannot reach inside.
  TLS still verifies the provider's certificate for the host name.
- LiteLLM's aiohttp transport, which httpcore does not see, is switched off where LiteLLM is
  loaded (:mod:`apiary.dataplane.evaluation.proxy._litellm`), and the one provider that speaks
  aiohttp directly (:data:`UNGUARDED_PROVIDERS`) is refused.

A refused connection fails the provider call with a connection error whose cause is the
:class:`~apiary.errors.OutboundUrlRefused`, and the refusal is also kept on the
:class:`Guard` (LiteLLM re-raises errors of its own and may drop the cause), so the proxy can
answer 400 ``outbound_url_refused`` instead of 502.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

import anyio.to_thread
import httpcore

from apiary.errors import OutboundUrlRefused
from apiary.outbound import OutboundPolicy

#: Providers whose LiteLLM code path connects outside httpcore (aiohttp directly), so the
#: guard cannot see their connections: the proxy refuses them.
UNGUARDED_PROVIDERS = frozenset({"aiohttp_openai"})

class Guard:
    """The policy in force in a :func:`guarded` block, and the first connection it refused."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self.policy = policy
        self.refused: OutboundUrlRefused | None = None

    def vet(self, host: str, port: int) -> list[str]:
        """:meth:`OutboundPolicy.vetted_addresses`, a refusal kept and raised as httpcore's
        connection error (what httpx and LiteLLM expect from a failed connect)."""
        try:
            return self.policy.vetted_addresses(host, port)
        except OutboundUrlRefused as refused:
            if self.refused is None:
                self.refused = refused
            error = httpcore.ConnectError(f"outbound connection refused: {refused.message}")
            raise error from refused
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc


_guard: ContextVar[Guard | None] = ContextVar("apiary_egress_guard", default=None)
_lock = threading.Lock()
_installed = False


@contextlib.contextmanager
def guarded(policy: OutboundPolicy) -> Iterator[Guard]:
    """Apply ``policy`` to every TCP connection httpcore opens in this context."""
    install()
    guard = Guard(policy)
    token = _guard.set(guard)
    try:
        yield guard
    finally:
        _guard.reset(token)


def install() -> None:
    """Wrap httpcore's socket backends once per process (idempotent, thread-safe)."""
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        _wrap_sync(httpcore.SyncBackend)
        _wrap_async(httpcore.AnyIOBackend)
        _installed = True


def _wrap_sync(backend: type[httpcore.SyncBackend]) -> None:
    original = backend.connect_tcp

    def connect_tcp(self: httpcore.SyncBackend, host: str, port: int,
                    timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                    ) -> httpcore.NetworkStream:
        guard = _guard.get()
        if guard is None:
            return original(self, host, port, timeout, local_address, socket_options)
        addresses = guard.vet(host, port)
        last: Exception | None = None
        for address in addresses:
            try:
                return original(self, address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # vetted_addresses never returns an empty list
        raise last

    backend.connect_tcp = connect_tcp  # type: ignore[method-assign]


def _wrap_async(backend: type[httpcore.AnyIOBackend]) -> None:
    original = backend.connect_tcp

    async def connect_tcp(self: httpcore.AnyIOBackend, host: str, port: int,
                          timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                          ) -> Any:
        guard = _guard.get()
        if guard is None:
            return await original(self, host, port, timeout, local_address, socket_options)
        addresses = await anyio.to_thread.run_sync(guard.vet, host, port)
        last: Exception | None = None
        for address in addresses:
            try:
                return await original(self, address, port, timeout, local_address,
                                      socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # vetted_addresses never returns an empty list
        raise last

    backend.connect_tcp = connect_tcp  # type: ignore[method-assign]
