"""One evaluator of the pool, as its Ray actor (:class:`apiary.actors.evaluator.EvaluatorActor`)
runs it: connect to NATS, build the :class:`~apiary.dataplane.evaluation.scoring.Scorer`,
run an :class:`~apiary.dataplane.evaluation.loop.EvaluatorLoop` on the shared durable
consumer ``evaluation/evaluators`` (that module states the guarantees), report counters,
drain on stop.

:meth:`EvaluatorService.start` is idempotent (a restarted actor calls it again);
:meth:`EvaluatorService.stop` drains: the loop finishes, publishes and acknowledges the
tasks it holds, then the scorer (its sandbox) is closed and the connection drained. The
sandbox starts with the first Python metric (a zygote with the allowed libraries preloaded,
~150 MB): an evaluator that only runs judges never pays it.

Supervised: the loop runs under :func:`~apiary.queue.outcomes.run_supervised`, started again
with back-off after any exception and counted (``loop_restarts`` in
:meth:`EvaluatorService.stats`, ``apiary_loop_restarts_total{loop="evaluator"}``); the tasks
the failed run held come back from JetStream. :meth:`EvaluatorService.start` (which the pool
calls to ensure actors run) starts a supervisor whose task ended.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nats.aio.client import Client

from apiary.dataplane.evaluation.loop import EvaluatorLoop
from apiary.dataplane.evaluation.scoring import Scorer
from apiary.objects import object_store
from apiary.queue import connect
from apiary.queue.outcomes import start_supervised, task_ended
from apiary.settings import ApiarySettings
from apiary.store import store_client

log = logging.getLogger("apiary.evaluator")


class EvaluatorService:
    """One evaluator named ``name``, consuming from the NATS server at ``nats_url``."""

    def __init__(self, settings: ApiarySettings, nats_url: str, name: str) -> None:
        self._settings = settings
        self._nats_url = nats_url
        self._name = name
        self._nc: Client | None = None
        self._loop: EvaluatorLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._scorer: Scorer | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Connect and start the supervised loop; a call while it runs does nothing, a call
        after its task ended (it never should) starts it again."""
        if self._stopping.is_set() or (self._task is not None and not self._task.done()):
            return
        if self._loop is None:
            from apiary._private.logs import configure_logging

            configure_logging(self._settings)
            self._nc = await connect(self._nats_url, name=self._name)
            settings = self._settings
            self._scorer = Scorer.from_settings(settings,
                                                judge_client=self._judge_client(self._nc))
            self._loop = EvaluatorLoop(
                js=self._nc.jetstream(), scorer=self._scorer, objects=object_store(settings),
                settings=settings, name=self._name, store=lambda: store_client(settings),
            )
        self._task = start_supervised(self._loop.run, self._loop.stats, loop="evaluator",
                                      stopping=self._stopping, log=log, previous=self._task)

    async def ensure_running(self) -> None:
        """Start the loop again if its task ended (:meth:`start`); idempotent."""
        await self.start()



    def _judge_client(self, nc: Client) -> Any:
        """LLM judges call the proxy in-process, as the scored event's tenant (its
        workspace's provider key, traced into its project); with ``evaluator_judge_url``
        set they call that OpenAI-compatible endpoint over HTTP instead."""
        if self._settings.evaluator_judge_url is not None:
            return None  # Scorer.from_settings builds the HTTP client
        from apiary.dataplane.evaluation.proxy.runtime import ProxyJudgeClient, open_chat_proxy
        from apiary.queue import EventPublisher

        publisher = EventPublisher(nc.jetstream(),
                                   timeout=self._settings.ingest_publish_timeout_s,
                                   max_message_bytes=nc.max_payload)
        return ProxyJudgeClient(open_chat_proxy(self._settings, publisher))

    async def stats(self) -> dict[str, Any]:
        """The loop's counters (``loop_restarts`` among them), ``name``, ``running``,
        ``last_error``, and whether the sandbox started (``sandbox_ready``,
        ``sandbox_jobs``)."""
        if self._loop is None:
            return {"name": self._name, "running": False}
        stats = self._loop.stats.as_dict()
        stats["name"] = self._name
        stats["running"] = self._task is not None and not self._task.done()
        if self._task is not None and self._task.done() and not self._stopping.is_set():
            stats["last_error"] = f"supervisor ended: {task_ended(self._task)}"
        sandbox = self._scorer.sandbox if self._scorer is not None else None
        stats["sandbox_ready"] = sandbox is not None
        stats["sandbox_jobs"] = sandbox.stats.jobs if sandbox is not None else 0
        return stats

    async def stop(self) -> dict[str, Any]:
        """Drain: stop fetching, finish and acknowledge the tasks held, then disconnect.
        Returns the final :meth:`stats`."""
        self._stopping.set()
        if self._loop is not None and self._task is not None:
            self._loop.stop()
            await asyncio.gather(self._task, return_exceptions=True)
        final = await self.stats()
        if self._scorer is not None:
            await self._scorer.close()
        if self._nc is not None:
            await self._nc.drain()
        return final


__all__ = ["EvaluatorService"]
