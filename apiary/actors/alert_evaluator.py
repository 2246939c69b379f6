"""The alert evaluator actor: one per data plane, named :data:`ALERT_EVALUATOR_NAME` in
namespace ``apiary``, running :class:`~apiary.dataplane.alerts.evaluator.AlertEvaluator`
every ``alert_interval_s`` (docs/alerts.md, "Evaluation").

Supervised: Ray restarts it whenever it dies (``max_restarts=-1``); the start-up sequence's
``ensure_running`` (every few seconds) starts the restarted actor's loop again. Its state is
in the ``alert-state`` bucket, so the restarted evaluator neither repeats nor forgets a
transition (:mod:`apiary.dataplane.alerts.state`). It reads ClickHouse through
:func:`apiary.store.store_client` (the chDB owner actor, or the server) and publishes to
NATS with a connection of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import ray

from apiary.dataplane.alerts.evaluator import AlertEvaluator
from apiary.dataplane.alerts.state import StateStore
from apiary.dataplane.notifications.alerting import notify_with
from apiary.queue import connect
from apiary.settings import ApiarySettings
from apiary.store import StoreClient, store_client

ALERT_EVALUATOR_NAME = "apiary-alert-evaluator"
NAMESPACE = "apiary"
log = logging.getLogger("apiary.dataplane.alerts")


class AlertEvaluatorService:
    """Connects, builds the evaluator and runs its loop as a task (what the actor runs;
    usable in-process). ``store``: the query handle (default :func:`store_client`)."""

    def __init__(self, settings: ApiarySettings, nats_url: str, *,
                 store: StoreClient | None = None, name: str = ALERT_EVALUATOR_NAME) -> None:
        self._settings = settings
        self._nats_url = nats_url
        self._store = store
        self._name = name
        self._nc: Any = None
        self._evaluator: AlertEvaluator | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.loop_restarts = 0

    async def start(self) -> None:
        """Connect (once) and run the loop; idempotent (a loop that ended is started
        again)."""
        if self._stopping or (self._task is not None and not self._task.done()):
            return
        if self._evaluator is None:
            from apiary._private.logs import configure_logging

            configure_logging(self._settings)
            self._nc = await connect(self._nats_url, name=self._name)
            js = self._nc.jetstream()
            store = self._store or store_client(self._settings)
            states = await StateStore.open(js, replicas=self._settings.nats_replicas)
            self._evaluator = AlertEvaluator(self._settings, js, store, states,
                                             notify_with(js))
        if self._task is not None:
            self.loop_restarts += 1
        self._task = asyncio.create_task(self._evaluator.run())

    async def ensure_running(self) -> None:
        await self.start()

    async def evaluate_now(self, now: float | None = None) -> dict[str, Any]:
        """One evaluation at ``now`` (tests and operators); the stats after it."""
        if self._evaluator is None:
            await self.start()
        assert self._evaluator is not None
        await self._evaluator.evaluate_all(now)
        return await self.stats()

    async def stats(self) -> dict[str, Any]:
        """Health: ``running`` and the evaluator's counters (cycles, evaluated, no_data,
        failed, transitions, last_window_end, last_cycle_s, last_error, ...)."""
        if self._evaluator is None:
            return {"name": self._name, "running": False}
        out = self._evaluator.snapshot()
        out["name"] = self._name
        out["running"] = self._task is not None and not self._task.done()
        out["loop_restarts"] = self.loop_restarts
        return out

    async def stop(self) -> dict[str, Any]:
        """Stop after the evaluation in progress (its outbox is sent or kept), disconnect."""
        self._stopping = True
        if self._evaluator is not None:
            self._evaluator.stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        final = await self.stats()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        return final


@ray.remote(max_restarts=-1, max_task_retries=0)
class AlertEvaluatorActor:
    """The data plane's alert evaluator (module docstring)."""

    def __init__(self, settings: ApiarySettings, nats_url: str) -> None:
        self._service = AlertEvaluatorService(settings, nats_url)

    async def start(self) -> None:
        await self._service.start()

    async def ensure_running(self) -> None:
        await self._service.ensure_running()

    async def evaluate_now(self, now: float | None = None) -> dict[str, Any]:
        return await self._service.evaluate_now(now)

    async def stats(self) -> dict[str, Any]:
        return await self._service.stats()

    async def stop(self) -> dict[str, Any]:
        return await self._service.stop()


def start_alert_evaluator(settings: ApiarySettings, nats_url: str, **options: Any) -> Any:
    """Start (or adopt: ``get_if_exists``) the named evaluator actor and its loop; its
    handle. Blocking; Ray must be up."""
    actor = AlertEvaluatorActor.options(  # type: ignore[attr-defined]
        name=ALERT_EVALUATOR_NAME, namespace=NAMESPACE, get_if_exists=True,
        max_restarts=-1, max_task_retries=0, **({"num_cpus": 0} | options),
    ).remote(settings, nats_url)
    ray.get(actor.start.remote(), timeout=60)
    return actor


def ensure_alert_evaluator(actor: Any) -> None:
    """Start the loop again if Ray restarted the actor (or the loop ended); blocking."""
    ray.get(actor.ensure_running.remote(), timeout=60)


def stop_alert_evaluator(actor: Any) -> None:
    """Stop the evaluator's loop (the evaluation in progress finishes), then the actor."""
    try:
        ray.get(actor.stop.remote(), timeout=30)
    finally:
        ray.kill(actor)


__all__ = ["ALERT_EVALUATOR_NAME", "AlertEvaluatorActor", "AlertEvaluatorService",
           "ensure_alert_evaluator", "start_alert_evaluator", "stop_alert_evaluator"]
