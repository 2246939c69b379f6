"""Settings tests read the environment: start each from one without ``APIARY_*``."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def no_apiary_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("APIARY_"):
            monkeypatch.delenv(name)
