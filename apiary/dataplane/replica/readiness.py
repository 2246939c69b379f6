"""Readiness of the data plane (``GET /readyz``): can what is accepted now be kept and stored?

Liveness (``/healthz``) says the replica's process answers; readiness says the pipeline
behind it works. Four checks run concurrently, each bounded by ``ready_check_timeout_s``:

- ``nats``: JetStream answers (the writers' consumer info, which also gives the lag). A
  nats-server that is stopped (SIGSTOP) or gone times out here, although the client may
  still believe it is connected.
- ``store``: the event store answers a trivial query (``SELECT 1``): the embedded chDB's
  owner actor, or the ClickHouse server.
- ``writers``: every writer loop beats (:mod:`apiary.queue.heartbeats`): at least
  ``writer_count`` writers report running within ``ready_heartbeat_stale_s``, and no writer
  whose entry is still in the bucket has gone quiet or reported that its loop ended.
- ``lag``: the writers' unacknowledged messages (pending + ack pending) are at most
  ``ready_backlog_limit``.
- ``federation`` (a federated data plane only, ``settings.federated``): not revoked by the
  control plane; its
  detail says whether it is draining, the config version applied and the stream's state.

Each check reports ``ok`` and, when not, ``error`` saying why; ``not_ready`` names the failing
checks. Nothing is cached: every call asks again, so readiness turns back as soon as the
dependency does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, Field

from apiary.dataplane.replica.federation_state import federation_status
from apiary.queue import EVENTS_STREAM, WRITERS_CONSUMER
from apiary.queue.heartbeats import read_heartbeats
from apiary.settings import ApiarySettings


class Check(BaseModel):
    """One dependency's state."""

    ok: bool
    error: str = ""
    detail: dict[str, Any] = Field(default_factory=dict)


class Readiness(BaseModel):
    """``/readyz``'s body (200 when ``ready``, else 503)."""

    ready: bool
    not_ready: list[str] = Field(description="The checks that failed.")
    checks: dict[str, Check]


async def _bounded(coro: Any, within_s: float, what: str) -> Any:
    try:
        async with asyncio.timeout(within_s):
            return await coro
    except TimeoutError:
        raise TimeoutError(f"{what} did not answer within {within_s:g} s") from None


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def readiness(settings: ApiarySettings, js: Any, store: Any) -> Readiness:
    """Run the checks (module docstring) against JetStream ``js`` and the ``store`` client."""
    timeout = settings.ready_check_timeout_s

    async def nats_and_lag() -> tuple[Check, Check]:
        try:
            info = await _bounded(js.consumer_info(EVENTS_STREAM, WRITERS_CONSUMER), timeout,
                                  "JetStream")
        except Exception as exc:
            error = _why(exc)
            return Check(ok=False, error=error), Check(ok=False, error=f"unknown: {error}")
        lag = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        limit = settings.ready_backlog_limit
        detail = {"messages": lag, "limit": limit}
        lag_check = Check(ok=lag <= limit, detail=detail,
                          error="" if lag <= limit else f"{lag} unwritten messages > {limit}")
        return Check(ok=True), lag_check

    async def store_check() -> Check:
        try:
            await _bounded(store.query_rows("SELECT 1 AS ok", None), timeout, "the event store")
            # How exports are read (without FINAL once the owner's register is loaded).
            reads = await _bounded(store.read_state(), timeout, "the event store")
        except Exception as exc:
            return Check(ok=False, error=_why(exc))
        return Check(ok=True, detail=reads)

    async def writers_check() -> Check:
        try:
            beats = await _bounded(read_heartbeats(js, "writer"), timeout, "JetStream")
        except Exception as exc:
            return Check(ok=False, error=f"unknown: {_why(exc)}")
        stale = settings.ready_heartbeat_stale_s
        running = [b.name for b in beats if b.running and b.age_s <= stale]
        down = [{"name": b.name, "last_beat_s": round(b.age_s, 1),
                 "error": b.error or ("loop ended" if not b.running else "no heartbeat")}
                for b in beats if not b.running or b.age_s > stale]
        expected = settings.writer_count
        problems = []
        if down:
            problems.append("not running: " + ", ".join(d["name"] for d in down))
        if len(running) < expected:
            problems.append(f"{len(running)} of {expected} writers running")
        return Check(ok=not problems, error="; ".join(problems),
                     detail={"running": running, "down": down, "expected": expected})

    async def federation_check() -> Check | None:
        if not settings.federated:
            return None
        try:
            status = await _bounded(federation_status(js), timeout, "JetStream")
        except Exception as exc:
            return Check(ok=False, error=f"unknown: {_why(exc)}")
        if status is None:
            return None  # not federated
        revoked = status["revoked"]
        return Check(ok=revoked is None, detail=status,
                     error="" if revoked is None else
                     f"revoked by the control plane: {revoked.get('reason') or 'no reason'}")

    (nats_check, lag_check), store_state, writers_state, federation = await asyncio.gather(
        nats_and_lag(), store_check(), writers_check(), federation_check())
    checks = {"nats": nats_check, "store": store_state, "writers": writers_state,
              "lag": lag_check}
    if federation is not None:
        checks["federation"] = federation
    failing = [name for name, check in checks.items() if not check.ok]
    return Readiness(ready=not failing, not_ready=failing, checks=checks)


__all__ = ["Check", "Readiness", "readiness"]
