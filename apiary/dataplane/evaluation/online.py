"""Online evaluation: after a writer stored events, queue the scores their project asks for.

The writer calls :func:`after_write` once per insert, **after** the insert succeeded and
**before** its messages are acknowledged (``apiary.dataplane.writer._flush.Flusher._settle``).
For each stored event of a project with online metrics
(:mod:`apiary.dataplane.evaluation.definitions`), every metric that was deployed before the
event arrived (the batch's ``version`` is its arrival time), whose filters match and whose
deterministic sample contains the event becomes one task on the ``evaluation`` stream,
carrying the event as stored. So a metric scores the events that arrive after it is
deployed, once: a re-write of an event stored earlier (a redelivered message, a replayed
dead letter) carries the event's original arrival time and queues nothing for a metric
deployed since.

Cost on the writer's path: one dictionary look-up per batch while the project has no
online metric (the definitions are cached per project for
``APIARY_EVALUATOR_DEFINITIONS_TTL_S``); otherwise a hash and a Python filter per event and
metric, and one JetStream publish per task (acknowledged before the flush finishes).

Guarantees: a task published is durable and scored at least once, one score per (event,
metric version) (:mod:`apiary.dataplane.evaluation.tasks`). A writer redelivered a batch it already
stored re-publishes the same task ids, which JetStream drops. Queueing is best effort
towards the writer: it never fails or delays an insert beyond the publish, never raises,
and drops (counting them) tasks the evaluation stream refuses because it is full, since
online evaluation is a sample anyway. A writer that dies after the insert and before the
acknowledgement gets the messages again: the writer hands this hook the redelivered events
it already stored too, and their tasks are published again under the same ids (JetStream
or the scored-task ledger drops the copies), so a crash loses no task.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext

from apiary.dataplane.evaluation.definitions import DefinitionCache
from apiary.dataplane.evaluation.judge import JUDGE_SOURCE
from apiary.dataplane.evaluation.publish import TaskPublisher
from apiary.dataplane.evaluation.tasks import EvaluationTask, new_task, sampled
from apiary.errors import PipelineBackpressure, QueueError
from apiary.event import UPDATES_KIND, EventBatch
from apiary.settings import ApiarySettings

log = logging.getLogger("apiary.dataplane.evaluation.online")

_PUBLISH_ATTEMPTS = 3


@dataclass
class OnlineStats:
    tasks_published: int = 0
    tasks_duplicate: int = 0
    tasks_dropped: int = 0
    before_deployment: int = 0  # (event, metric) pairs skipped: the event arrived earlier
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class OnlineTrigger:
    """One writer's online evaluation trigger (one per JetStream context)."""

    def __init__(self, js: JetStreamContext, settings: ApiarySettings) -> None:
        self.definitions = DefinitionCache(js, settings)
        self._publisher = TaskPublisher(js)
        self.stats = OnlineStats()

    async def after_write(self, batches: Iterable[EventBatch]) -> None:
        """Queue the tasks of the stored events in ``batches``; never raises."""
        try:
            tasks = await self._tasks(batches)
            if tasks:
                await self._publish(tasks)
        except Exception as exc:  # the events are stored; evaluation must not hurt that
            self.stats.last_error = repr(exc)
            log.exception("online evaluation trigger failed")

    async def _tasks(self, batches: Iterable[EventBatch]) -> list[EvaluationTask]:
        tasks: list[EvaluationTask] = []
        created = time.time_ns()
        for batch in batches:
            events = batch["events"]
            if not events or batch.get("kind") == UPDATES_KIND:
                continue
            tenant = batch["tenant"]
            metrics = await self.definitions.metrics(tenant["project_id"])
            if not metrics:
                continue
            # A judge's own calls are never judged again.
            scorable = [event for event in events if event["source"] != JUDGE_SOURCE]
            arrived = int(batch.get("version") or 0)
            for metric in metrics:
                if not metric.scores_arrival(arrived):
                    self.stats.before_deployment += len(scorable)
                    continue
                spec = metric.spec
                for event in scorable:
                    if sampled(event["event_id"], spec) and metric.matches(event):
                        tasks.append(new_task(tenant, event, spec, source="online",
                                              created_ns=created))
        return tasks

    async def _publish(self, tasks: list[EvaluationTask]) -> None:
        delay = 0.1
        for attempt in range(1, _PUBLISH_ATTEMPTS + 1):
            try:
                published = await self._publisher.publish(tasks)
            except PipelineBackpressure as exc:
                self._drop(tasks, exc)
                return
            except QueueError as exc:
                if attempt == _PUBLISH_ATTEMPTS:
                    self._drop(tasks, exc)
                    return
                await asyncio.sleep(delay)
                delay *= 4
                continue
            self.stats.tasks_published += published.new
            self.stats.tasks_duplicate += published.duplicates
            return

    def _drop(self, tasks: list[EvaluationTask], error: Exception) -> None:
        # Re-publishing all is safe (task ids dedup), so some may in fact be queued.
        self.stats.tasks_dropped += len(tasks)
        self.stats.last_error = str(error)
        log.warning("online evaluation tasks dropped",
                    extra={"tasks": len(tasks), "error": str(error)})


_triggers: weakref.WeakKeyDictionary[JetStreamContext, OnlineTrigger] = (
    weakref.WeakKeyDictionary())


def trigger_for(js: JetStreamContext, settings: ApiarySettings) -> OnlineTrigger:
    """The trigger of the writer publishing through ``js`` (made on first use)."""
    trigger = _triggers.get(js)
    if trigger is None:
        trigger = _triggers[js] = OnlineTrigger(js, settings)
    return trigger


async def after_write(js: JetStreamContext, settings: ApiarySettings,
                      batches: Iterable[EventBatch]) -> None:
    """The writer's hook: queue online evaluation tasks for ``batches`` just stored."""
    await trigger_for(js, settings).after_write(batches)


__all__ = ["OnlineStats", "OnlineTrigger", "after_write", "trigger_for"]
