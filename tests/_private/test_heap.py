"""The collector tuned after start-up (apiary._private.heap)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys


def test_freezing_moves_the_startup_heap_out_of_every_collection() -> None:
    """Run in a fresh interpreter: freezing is process-wide and would change this one's."""
    code = (
        "import gc, json\n"
        "from apiary._private.heap import YOUNG_THRESHOLD, freeze_startup_heap\n"
        "import fastapi, pyarrow\n"
        "before = len(gc.get_objects())\n"
        "frozen = freeze_startup_heap()\n"
        "after = len(gc.get_objects())\n"
        "class Cycle: pass\n"
        "c = Cycle(); c.me = c; del c\n"
        "collected = gc.collect()\n"
        "print(json.dumps([before, frozen, after, gc.get_threshold(), YOUNG_THRESHOLD,"
        " collected]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    before, frozen, after, threshold, young, collected = json.loads(out)
    assert frozen > 10_000  # start-up's objects, frozen
    assert frozen >= before * 0.9
    assert after < before / 10  # no longer tracked by any generation
    assert threshold[0] == young > 700
    assert collected >= 1  # a cycle made afterwards is still collected
    assert gc.get_freeze_count() == 0  # this interpreter untouched
