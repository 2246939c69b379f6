"""Per-metric circuit breakers: a metric that keeps failing is paused, not retried forever.

A metric that fails on an event (its code raises, times out or exceeds a limit; its judge
gives no verdict) fails on the next event too, more often than not; a busy loop holds a
sandbox worker for the whole timeout each time. So each evaluator counts, per (project,
metric), the evaluations that failed in a row; at ``APIARY_EVALUATOR_BREAKER_FAILURES``
it **pauses** the metric for the whole pool: it writes the breaker's state (paused, the
count, the last error, when) to the JetStream key-value bucket ``evaluator-breakers``
(file storage, the streams' replicas), which every evaluator reads (cached for
``ttl_s``) and ``GET /v1/metrics`` shows. A success resets the count.

While a metric is paused its tasks are acknowledged as **skipped** without running
(counted: ``skipped_paused`` in the evaluator's stats, ``skipped`` in the breaker's state,
``apiary_evaluations_total{outcome="skipped_paused"}``); they are not redelivered later.
``POST /v1/metrics/{id}/resume`` (``evaluators:write``) closes the breaker: the metric
scores the tasks that arrive after that (within ``ttl_s`` on every evaluator).

Counting is per evaluator (no write per evaluation): with several evaluators a metric is
paused once one of them saw the threshold in a row. The store being unreachable never
stops scoring: a breaker that cannot be read counts as closed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from apiary._private import metrics
from apiary.dataplane.evaluation.ledger import open_bucket
from apiary.settings import ApiarySettings

log = logging.getLogger("apiary.evaluator")

BREAKERS_BUCKET = "evaluator-breakers"
_CAS_ATTEMPTS = 5


def _key(project_id: str, metric_id: str) -> str:
    # Ids are opaque: hashes are always valid keys.
    def h(value: str) -> str:
        return hashlib.sha256(value.encode()).hexdigest()[:32]
    return f"{h(project_id)}.{h(metric_id)}"


@dataclass(slots=True)
class BreakerState:
    """One metric's breaker in one project, as ``GET /v1/metrics`` shows it."""

    project_id: str
    metric_id: str
    state: str = "closed"  # closed | paused
    consecutive_failures: int = 0
    last_error: str | None = None
    paused_at: float | None = None
    resumed_at: float | None = None
    skipped: int = 0  # tasks acknowledged without running while paused

    @property
    def paused(self) -> bool:
        return self.state == "paused"

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "consecutive_failures": self.consecutive_failures,
                "last_error": self.last_error, "paused_at": self.paused_at,
                "resumed_at": self.resumed_at, "skipped": self.skipped}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> BreakerState:
        return cls(project_id=str(doc["project_id"]), metric_id=str(doc["metric_id"]),
                   state=str(doc.get("state") or "closed"),
                   consecutive_failures=int(doc.get("consecutive_failures") or 0),
                   last_error=doc.get("last_error"), paused_at=doc.get("paused_at"),
                   resumed_at=doc.get("resumed_at"), skipped=int(doc.get("skipped") or 0))


class BreakerStore:
    """The bucket of breakers, one entry per (project, metric) that ever tripped."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, settings: ApiarySettings) -> BreakerStore:
        config = KeyValueConfig(
            bucket=BREAKERS_BUCKET, description="Apiary: metrics paused by their breaker",
            history=1, storage=StorageType.FILE, replicas=settings.nats_replicas,
        )
        return cls(await open_bucket(js, config))

    async def _entry(self, project_id: str, metric_id: str
                     ) -> tuple[BreakerState | None, int]:
        """The state and its revision (0: no entry)."""
        try:
            entry = await self._kv.get(_key(project_id, metric_id))
        except (KeyNotFoundError, KeyDeletedError):
            return None, 0
        doc = orjson.loads(entry.value or b"{}")
        if doc.get("project_id") != project_id or doc.get("metric_id") != metric_id:
            return None, int(entry.revision or 0)  # a hash collision: never another's
        return BreakerState.from_doc(doc), int(entry.revision or 0)

    async def get(self, project_id: str, metric_id: str) -> BreakerState:
        state, _ = await self._entry(project_id, metric_id)
        return state or BreakerState(project_id, metric_id)

    async def states(self, project_id: str, metric_ids: Sequence[str]
                     ) -> dict[str, BreakerState]:
        found = await asyncio.gather(*(self.get(project_id, m) for m in metric_ids))
        return {state.metric_id: state for state in found}

    async def _update(self, project_id: str, metric_id: str, change: Any) -> BreakerState:
        """Apply ``change(state)`` with compare-and-set (concurrent evaluators)."""
        for _ in range(_CAS_ATTEMPTS):
            state, revision = await self._entry(project_id, metric_id)
            state = state or BreakerState(project_id, metric_id)
            change(state)
            doc = orjson.dumps({"project_id": project_id, "metric_id": metric_id,
                                **state.as_dict()})
            try:
                if revision:
                    await self._kv.update(_key(project_id, metric_id), doc, last=revision)
                else:
                    await self._kv.create(_key(project_id, metric_id), doc)
                return state
            except KeyWrongLastSequenceError:  # another evaluator wrote first: again
                continue
        raise TimeoutError("the breaker kept changing under us")

    async def pause(self, project_id: str, metric_id: str, failures: int,
                    error: str) -> BreakerState:
        """Durable when it returns (JetStream acknowledged the write)."""
        def change(state: BreakerState) -> None:
            if not state.paused:
                state.paused_at = time.time()
            state.state = "paused"
            state.consecutive_failures = failures
            state.last_error = error[:2000]
        return await self._update(project_id, metric_id, change)

    async def resume(self, project_id: str, metric_id: str) -> BreakerState:
        """Close the breaker (its last error stays shown); durable when it returns."""
        def change(state: BreakerState) -> None:
            state.state = "closed"
            state.consecutive_failures = 0
            state.resumed_at = time.time()
        return await self._update(project_id, metric_id, change)

    async def count_skipped(self, project_id: str, metric_id: str, skipped: int) -> None:
        def change(state: BreakerState) -> None:
            state.skipped += skipped
        await self._update(project_id, metric_id, change)


@dataclass(slots=True)
class _Cached:
    paused: bool
    expires: float


class MetricBreakers:
    """One evaluator's breakers: consecutive failures counted here, state in the bucket."""

    def __init__(self, store: BreakerStore, *, threshold: int, ttl_s: float = 1.0) -> None:
        self._store = store
        self._threshold = threshold
        self._ttl = ttl_s
        self._failures: dict[tuple[str, str], int] = {}
        self._cache: dict[tuple[str, str], _Cached] = {}
        self.paused_here = 0  # breakers this evaluator tripped

    async def paused(self, project_id: str, metric_id: str) -> bool:
        """Whether the metric is paused (read at most every ``ttl_s``; unreadable: no)."""
        key = (project_id, metric_id)
        cached = self._cache.get(key)
        if cached is not None and cached.expires > time.monotonic():
            return cached.paused
        try:
            paused = (await self._store.get(project_id, metric_id)).paused
        except Exception as exc:
            log.warning("circuit breaker unreadable; the metric runs",
                        extra={"project_id": project_id, "metric_id": metric_id,
                               "error": repr(exc)})
            paused = cached.paused if cached is not None else False
        self._cache[key] = _Cached(paused, time.monotonic() + self._ttl)
        if not paused:
            self._cache_open_gauge()
        return paused

    def succeeded(self, project_id: str, metric_id: str) -> None:
        self._failures.pop((project_id, metric_id), None)

    async def failed(self, project_id: str, metric_id: str, error: str) -> bool:
        """Count a failure; True if it paused the metric now."""
        key = (project_id, metric_id)
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        if count < self._threshold:
            return False
        try:
            await self._store.pause(project_id, metric_id, count, error)
        except Exception as exc:  # try again at the next failure
            log.warning("pausing a failing metric failed",
                        extra={"project_id": project_id, "metric_id": metric_id,
                               "error": repr(exc)})
            return False
        self._failures.pop(key, None)
        self._cache[key] = _Cached(True, time.monotonic() + self._ttl)
        self.paused_here += 1
        self._cache_open_gauge()
        log.warning("metric paused by its circuit breaker",
                    extra={"project_id": project_id, "metric_id": metric_id,
                           "failures": count, "error": error[:500]})
        return True

    async def skipped(self, project_id: str, metric_id: str) -> None:
        """Count a task skipped while paused (best effort: a lost count loses no data)."""
        try:
            await self._store.count_skipped(project_id, metric_id, 1)
        except Exception as exc:
            log.debug("skipped count not recorded", extra={"error": repr(exc)})

    def _cache_open_gauge(self) -> None:
        metrics.set_gauge(metrics.BREAKERS_OPEN,
                          float(sum(1 for c in self._cache.values() if c.paused)))


__all__ = ["BREAKERS_BUCKET", "BreakerState", "BreakerStore", "MetricBreakers"]
