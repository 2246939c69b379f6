"""Filling annotation queues from their rules: new events that match the filters become items.

A fill of one queue asks the event store for the project's events matching the queue's
``filters`` whose start time is at or after the queue's ``fill_cursor`` less
``lookback_s``, adds them (:func:`apiary.dataplane.review.items.add_events`, source ``rule``), and
moves the cursor to the time the fill started. So:

- every matching event whose start time is at most ``lookback_s`` older than the previous
  fill reaches the queue at the next fill (events stored later than that, with older start
  times, are not looked for again: the look-back is the bound on lateness);
- a fill is idempotent: the windows overlap on purpose, and an event already in the queue
  (or removed from it by a person) is left alone;
- several replicas may fill at once: the items' primary key keeps one item per event, and
  the loser of a race retries once and finds nothing new.

A fill reads at most :data:`MAX_PER_FILL` events; a larger backlog moves the cursor only to
the last event read, and the next fill goes on from there.

:class:`QueueFiller` runs fills periodically (every ``interval_s``, for the queues not filled
within it); the API also fills a queue on demand and before listing its items.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from apiary._private import metrics
from apiary.dataplane.db import AnnotationQueue, DataPlaneDatabase, utcnow
from apiary.dataplane.review.items import add_events
from apiary.store import StoreClient

log = logging.getLogger("apiary.dataplane.review")

PAGE = 1000
MAX_PER_FILL = 10_000


@dataclass(frozen=True, slots=True)
class _Rule:
    queue_id: str
    project_id: str
    filters: list[dict[str, Any]]
    since: datetime


def _ms(moment: datetime) -> float:
    return moment.timestamp() * 1000.0


class QueueFiller:
    """Fills rule-based annotation queues of every project from the event store."""

    def __init__(self, *, database: Callable[[], DataPlaneDatabase], store: StoreClient,
                 interval_s: float, lookback_s: float) -> None:
        self._database = database
        self._store = store
        self.interval_s = interval_s
        self.lookback_s = lookback_s
        #: Rounds of :meth:`run` that failed (each logged; the next round runs anyway).
        self.failed_rounds = 0

    async def _transaction(self, work: Callable[[Session], Any]) -> Any:
        def run() -> Any:
            with self._database().transaction() as db:
                return work(db)
        return await asyncio.to_thread(run)

    async def fill(self, queue_id: str, *, only_if_due: bool = False) -> int:
        """Fill one queue now (or only if it was not filled within ``interval_s``);
        returns how many events became items. Disabled queues and queues without
        filters are left alone."""
        started = utcnow()

        def read(db: Session) -> _Rule | None:
            queue = db.get(AnnotationQueue, queue_id)
            if queue is None or not queue.enabled or not queue.filters:
                return None
            if only_if_due and queue.last_filled_at is not None and (
                    started - queue.last_filled_at).total_seconds() < self.interval_s:
                return None
            cursor = queue.fill_cursor or queue.created_at
            return _Rule(queue.id, queue.project_id, list(queue.filters),
                         cursor - timedelta(seconds=self.lookback_s))

        rule = await self._transaction(read)
        if rule is None:
            return 0
        event_ids, last_start = await self._matching(rule)
        capped = len(event_ids) >= MAX_PER_FILL
        cursor = (datetime.fromtimestamp(last_start / 1000.0, UTC)
                  if capped and last_start is not None else started)

        def write(db: Session) -> int:
            queue = db.get(AnnotationQueue, rule.queue_id)
            if queue is None:
                return 0
            added = add_events(db, queue, event_ids, source="rule", added_by="rule")
            # Never move back: a concurrent fill may have gone further already.
            if queue.fill_cursor is None or cursor > queue.fill_cursor:
                queue.fill_cursor = cursor
            queue.last_filled_at = started
            return len(added)

        try:
            return int(await self._transaction(write))
        except IntegrityError:  # another replica added some of them first; once more
            return int(await self._transaction(write))

    async def _matching(self, rule: _Rule) -> tuple[list[str], float | None]:
        ids: list[str] = []
        last_start: float | None = None
        page = 1
        while len(ids) < MAX_PER_FILL:
            result = await self._store.export(rule.project_id, {
                "filters": rule.filters, "dateRange": {"$gte": _ms(rule.since)},
                "projections": ["start_time"], "limit": PAGE, "page": page})
            events = result["events"]
            ids.extend(str(e["event_id"]) for e in events)
            if events:
                last_start = float(events[-1].get("start_time") or 0.0)
            if len(events) < PAGE:
                break
            page += 1
        return ids[:MAX_PER_FILL], last_start

    async def fill_due(self) -> int:
        """Fill every enabled queue with rules not filled within ``interval_s``."""
        due_before = utcnow() - timedelta(seconds=self.interval_s)

        def due(db: Session) -> list[str]:
            return list(db.scalars(select(AnnotationQueue.id).where(
                AnnotationQueue.enabled.is_(True),
                or_(AnnotationQueue.last_filled_at.is_(None),
                    AnnotationQueue.last_filled_at <= due_before))))

        total = 0
        for queue_id in await self._transaction(due):
            try:
                total += await self.fill(queue_id, only_if_due=True)
            except Exception as exc:  # one broken queue must not starve the others
                log.warning("annotation queue fill failed",
                            extra={"queue_id": queue_id, "error": str(exc)})
        return total

    async def run(self) -> None:
        """Fill due queues every ``interval_s`` until cancelled, the first time one interval
        after start: a replica starting up opens (and migrates) dpdb on its first request,
        not from here at the same moment. A failed round never ends it: it is logged and
        counted (``failed_rounds``, ``apiary_loop_restarts_total{loop="review_filler"}``)."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.fill_due()
            except Exception as exc:  # the store or dpdb may be back next time
                self.failed_rounds += 1
                metrics.inc(metrics.LOOP_RESTARTS, loop="review_filler")
                log.warning("annotation queue fills failed", extra={"error": str(exc)})
