"""The compiled hot path maps exactly like its sources, on a corpus of odd requests
(each sent as protobuf and as OTLP JSON).

mypyc enforces annotations at runtime and compiles some operations differently (``int /
int`` on nanoseconds lost the microsecond, for one), so the compiled modules are compared
with their sources, in a process run with ``APIARY_FROM_SOURCE=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from parity_corpus import results

import apiary

CORPUS = Path(__file__).resolve().parent / "parity_corpus.py"


def test_compiled_hot_path_maps_odd_requests_like_its_sources(tmp_path: Path) -> None:
    out = tmp_path / "from_source.json"
    done = subprocess.run(
        [sys.executable, str(CORPUS), str(out)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "APIARY_FROM_SOURCE": "1"},
    )
    assert done.returncode == 0, done.stderr
    from_source = json.loads(out.read_text())
    here = results()
    assert len(here) == len(from_source) == 800
    # Most requests must map, in both encodings: a corpus that only fails compares nothing.
    assert sum(r.startswith("([{") for r in from_source[0::2]) > 300
    assert sum(r.startswith("([{") for r in from_source[1::2]) > 300
    differing = [i for i, (a, b) in enumerate(zip(here, from_source, strict=True)) if a != b]
    form = "compiled" if apiary.COMPILED_MODULES else "from source"
    assert differing == [], (
        f"{form} differs from source on {len(differing)} requests; first: "
        f"{here[differing[0]][:600]} != {from_source[differing[0]][:600]}")
