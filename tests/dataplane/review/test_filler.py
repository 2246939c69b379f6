"""The queue filler's loop (apiary/dataplane/review/filler.py) survives failed rounds."""

from __future__ import annotations

import asyncio

from _dataplane import until

from apiary.dataplane.db import DataPlaneDatabase
from apiary.dataplane.review.filler import QueueFiller
from apiary.store import DirectStoreClient, EventStore


async def test_filler_loop_survives_failing_rounds_and_counts_them(store: EventStore) -> None:
    def unreachable() -> DataPlaneDatabase:
        raise ConnectionError("dpdb unreachable")

    filler = QueueFiller(database=unreachable, store=DirectStoreClient(store),
                         interval_s=0.01, lookback_s=60)
    task = asyncio.create_task(filler.run())
    try:
        await until(lambda: _now(filler.failed_rounds >= 3), 10.0)
        assert not task.done()  # still filling: no round ends the loop
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _now(value: bool) -> bool:
    return value
