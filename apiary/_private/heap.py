"""The garbage collector of a long-running server process, tuned once it has started.

After start-up a data-plane replica holds about a million objects (Ray, FastAPI, pyarrow,
the app) that live as long as it does, and CPython's full collections traversed all of
them: under ingest load the collector was 17 % of a replica's CPU (py-spy,
docs/benchmarks.md). The many dicts and lists that mapping spans allocates are freed by
reference counting and are almost never cyclic, so collecting them more rarely costs
little memory. :func:`freeze_startup_heap` moves what start-up allocated to the permanent
generation (:func:`gc.freeze`), which no collection traverses, and raises the youngest
generation's threshold. Cycles created later are still collected.
"""

from __future__ import annotations

import gc

#: Allocations (net of deallocations) between two collections of the youngest generation;
#: CPython's default is 700.
YOUNG_THRESHOLD = 20_000


def freeze_startup_heap(young_threshold: int = YOUNG_THRESHOLD) -> int:
    """Collect once, freeze every surviving object and raise the youngest generation's
    threshold (the older generations' stay); returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)
    return gc.get_freeze_count()


__all__ = ["YOUNG_THRESHOLD", "freeze_startup_heap"]
