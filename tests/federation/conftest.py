"""Federation end to end (issue 15, "Done when"): one control plane and two data planes, each
a separate ``apiary up`` process on this machine.

This folder mirrors the issue, not a package: federation spans both planes, the start-up
and the CLI, so its end-to-end test lives here rather than under one package's folder
(the units of each part are tested in the folders of their packages, e.g.
``tests/dataplane/federation``). ``_planes.py`` is its harness; the process handling is
shared with ``bench/federation`` from ``bench/_planes.py``, which is why the repository's
root is put on ``sys.path`` here (``bench`` is not an installed package).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
