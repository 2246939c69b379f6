"""Evaluation tasks on the ``evaluation`` stream, and the score patches they produce.

A task asks for one score: one event, one metric version. Subject
``evaluation.<source>.<project_id>`` (``source``: ``online``, ``request``, ``run``). It
carries the metric's spec (so an evaluator needs no definition look-up) and, unless it is
larger than :data:`INLINE_EVENT_MAX_BYTES`, the event as it was when the task was made
(else the evaluator reads the newest stored version).

Identity, which is what makes at-least-once delivery produce one score:

- :func:`task_id` is a hash of ``(project, event, metric id, metric version)``: the same
  score requested twice is the same task. It is the task's ``Nats-Msg-Id`` (JetStream
  drops a re-publish within its duplicate window) and the key of the scored-task ledger
  (:mod:`apiary.dataplane.evaluation.ledger`), which outlives that window.
- The score patch's ``Nats-Msg-Id`` is derived from the task id, so a task scored twice
  (redelivered after a crash between publishing the score and acknowledging the task)
  publishes its score once.
- The patch's ``version`` is the task's ``created_ns``, fixed when the task was made, so a
  redelivered task builds the same patch; merging applies patches by key, so applying it
  again changes nothing.

Sampling is deterministic (:func:`sampled`): the same event and metric version are always
in or out of a ``sampling_pct`` sample, whichever writer sees the event and however often.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict, cast

import orjson

from apiary.dataplane.evaluation.metrics import MetricSpec
from apiary.dataplane.evaluation.sandbox import MetricResult
from apiary.errors import PoisonMessage
from apiary.event import UPDATES_KIND, EventBatch, EventPatch, Tenant
from apiary.queue import WIRE_SCHEMA, events_subject

TASK_SCHEMA = 1
SOURCES = ("online", "request", "run")
#: Events larger than this (as JSON) travel by reference: the evaluator reads them.
INLINE_EVENT_MAX_BYTES = 256 * 1024
_ID_PERSON = b"apiary-eval-v1"


class EvaluationTask(TypedDict):
    schema: int
    task_id: str
    source: str
    tenant: Tenant
    event_id: str
    metric: MetricSpec
    created_ns: int  # when the task was made: the score patch's version
    event: NotRequired[dict[str, Any]]  # the event as it was; absent: read the newest
    request_id: NotRequired[str]


def task_id(project_id: str, event_id: str, metric_id: str, version: int) -> str:
    """The id of "score this event with this metric version" (module docstring)."""
    key = orjson.dumps([project_id, event_id, metric_id, version])
    return hashlib.blake2b(key, digest_size=16, person=_ID_PERSON).hexdigest()


def sampled(event_id: str, metric: MetricSpec) -> bool:
    """Whether ``event_id`` is in the metric version's ``sampling_pct`` sample."""
    pct = metric["sampling_pct"]
    if pct >= 100:
        return True
    if pct <= 0:
        return False
    key = f"{event_id}\x00{metric['id']}\x00{metric['version']}".encode()
    draw = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
    return draw < pct / 100.0 * 2**64


def task_subject(source: str, project_id: str) -> str:
    return f"evaluation.{source}.{project_id}"


def task_msg_id(task: EvaluationTask) -> str:
    return f"eval-task-{task['task_id']}"


def score_msg_id(task: EvaluationTask) -> str:
    return f"eval-score-{task['task_id']}"


def new_task(tenant: Tenant, event: Mapping[str, Any], metric: MetricSpec, *,
             source: str, created_ns: int | None = None,
             request_id: str | None = None) -> EvaluationTask:
    """A task scoring ``event`` (an event dict with at least ``event_id``) with ``metric``."""
    if source not in SOURCES:
        raise ValueError(f"unknown task source {source!r}")
    event_id = str(event["event_id"])
    task: EvaluationTask = {
        "schema": TASK_SCHEMA,
        "task_id": task_id(tenant["project_id"], event_id, metric["id"], metric["version"]),
        "source": source,
        "tenant": {"org_id": tenant["org_id"], "workspace_id": tenant["workspace_id"],
                   "project_id": tenant["project_id"]},
        "event_id": event_id,
        "metric": metric,
        "created_ns": created_ns if created_ns is not None else time.time_ns(),
    }
    if request_id is not None:
        task["request_id"] = request_id
    snapshot = dict(event)
    if len(orjson.dumps(snapshot, default=str)) <= INLINE_EVENT_MAX_BYTES:
        task["event"] = snapshot
    return task


def encode_task(task: EvaluationTask) -> bytes:
    return orjson.dumps(task, default=str)


def decode_task(data: bytes) -> EvaluationTask:
    """A task from the wire, checked; :class:`PoisonMessage` saying what is wrong."""
    try:
        doc: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage(f"task is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != TASK_SCHEMA:
        raise PoisonMessage("not an evaluation task of a known schema",
                            expected=TASK_SCHEMA)
    tenant, metric = doc.get("tenant"), doc.get("metric")
    if not isinstance(tenant, dict) or not all(
            isinstance(tenant.get(k), str) for k in ("org_id", "workspace_id", "project_id")):
        raise PoisonMessage("task has no tenant")
    if not tenant["project_id"]:
        raise PoisonMessage("task has an empty project id")
    for key in ("task_id", "event_id", "source"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise PoisonMessage(f"task has no {key}")
    if type(doc.get("created_ns")) is not int or doc["created_ns"] < 0:
        raise PoisonMessage("task has no created_ns")
    if not isinstance(metric, dict) or not isinstance(metric.get("id"), str) or not \
            isinstance(metric.get("name"), str) or type(metric.get("version")) is not int:
        raise PoisonMessage("task has no metric (id, name, version)")
    if metric.get("kind") not in ("python", "llm", "human"):
        raise PoisonMessage(f"task has an unknown metric kind {metric.get('kind')!r}")
    if "event" in doc and not (isinstance(doc["event"], dict)
                               and doc["event"].get("event_id") == doc["event_id"]):
        raise PoisonMessage("task's event is not the event it names")
    expected = task_id(tenant["project_id"], doc["event_id"], metric["id"], metric["version"])
    if doc["task_id"] != expected:
        raise PoisonMessage("task id does not match its event and metric")
    return cast(EvaluationTask, doc)


def score_patch(task: EvaluationTask, result: MetricResult) -> EventPatch | None:
    """The patch recording ``result`` on the scored event (HoneyHive's ``metrics`` shape:
    ``<name>``, ``<name>_explanation``, ``<name>_<extra>``); None if it records nothing."""
    attrs = result.to_metric_attrs(task["metric"]["name"])
    if not attrs:
        return None
    return {"event_id": task["event_id"], "version": task["created_ns"], "metrics": attrs}


def score_batch(task: EvaluationTask, patch: EventPatch) -> EventBatch:
    """The ``updates`` batch carrying ``patch`` to the writers."""
    return {"schema": WIRE_SCHEMA, "kind": UPDATES_KIND, "tenant": task["tenant"],
            "version": task["created_ns"], "events": [], "patches": [patch]}


def score_subject(task: EvaluationTask) -> str:
    return events_subject(UPDATES_KIND, task["tenant"]["project_id"])


__all__ = [
    "INLINE_EVENT_MAX_BYTES",
    "SOURCES",
    "TASK_SCHEMA",
    "EvaluationTask",
    "decode_task",
    "encode_task",
    "new_task",
    "sampled",
    "score_batch",
    "score_msg_id",
    "score_patch",
    "score_subject",
    "task_id",
    "task_msg_id",
    "task_subject",
]
