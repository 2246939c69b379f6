"""Publishing evaluation tasks to the ``evaluation`` stream.

:meth:`TaskPublisher.publish` returns once JetStream acknowledged every task (the tasks are
durable then). Each carries ``Nats-Msg-Id`` = its task id, so publishing the same task again
within the stream's duplicate window stores nothing: the answer counts it as a duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import APIError

from apiary.dataplane.evaluation.tasks import EvaluationTask, encode_task, task_msg_id, task_subject
from apiary.errors import PipelineBackpressure, QueueError
from apiary.queue import EVALUATION_STREAM

# JetStream's answers to a publish into a full (discard-new) stream.
_STREAM_FULL_CODES = frozenset({10077, 10047, 10028})
#: Publishes in flight at once (bounded so a large request cannot flood the connection).
_WINDOW = 256


@dataclass(frozen=True, slots=True)
class Published:
    new: int  # stored now
    duplicates: int  # already on the stream (same task id within the duplicate window)


class TaskPublisher:
    """Publishes :class:`EvaluationTask` s onto the ``evaluation`` stream."""

    def __init__(self, js: JetStreamContext, *, timeout_s: float = 10.0) -> None:
        self._js = js
        self._timeout = timeout_s

    async def publish(self, tasks: Sequence[EvaluationTask]) -> Published:
        """Publish ``tasks``; raises :class:`PipelineBackpressure` if the stream is full and
        :class:`QueueError` if JetStream does not acknowledge (some may be stored then:
        publishing them all again is safe)."""
        slots = asyncio.Semaphore(_WINDOW)

        async def one(task: EvaluationTask) -> bool:
            async with slots:
                return await self._publish_one(task)

        results = await asyncio.gather(*(one(t) for t in tasks))
        duplicates = sum(1 for r in results if r)
        return Published(new=len(results) - duplicates, duplicates=duplicates)

    async def _publish_one(self, task: EvaluationTask) -> bool:
        """True if JetStream already had the task."""
        try:
            ack = await self._js.publish(
                task_subject(task["source"], task["tenant"]["project_id"]),
                encode_task(task), timeout=self._timeout, stream=EVALUATION_STREAM,
                headers={"Nats-Msg-Id": task_msg_id(task)},
            )
        except APIError as exc:
            if exc.err_code in _STREAM_FULL_CODES or "maximum" in (exc.description or ""):
                raise PipelineBackpressure("the evaluation queue is full; retry later",
                                           retry_after=5.0) from exc
            raise QueueError(f"JetStream refused an evaluation task: {exc.description}"
                             ) from exc
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise QueueError("JetStream did not acknowledge in time",
                             timeout_s=self._timeout) from exc
        except nats.errors.Error as exc:
            raise QueueError(f"JetStream unreachable: {exc}") from exc
        return bool(ack.duplicate)


__all__ = ["Published", "TaskPublisher"]
