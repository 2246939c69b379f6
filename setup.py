"""The setuptools build hook: everything else is in ``pyproject.toml``.

Before setuptools collects the packages, it generates the federation stream's gRPC code
from ``proto/`` into ``apiary/_generated`` (``scripts/build_proto.py``; grpcio-tools is a
``[build-system]`` requirement), so that wheels and installs carry it while the repository
never does. An sdist without ``proto/`` (already generated) is left as it is.
"""

from __future__ import annotations

import runpy
from pathlib import Path

from setuptools import setup

_ROOT = Path(__file__).resolve().parent
_SCRIPT = _ROOT / "scripts" / "build_proto.py"

if _SCRIPT.exists() and (_ROOT / "proto").is_dir():
    runpy.run_path(str(_SCRIPT))["main"](["--if-stale"])

setup()
