"""Fixtures of the start-up tests: a clean APIARY_* environment."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest


@pytest.fixture
def set_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """Replace every APIARY_* variable of this process by the given environment (on each
    call: a test may switch between the planes' environments)."""

    def clear() -> None:
        for key in list(os.environ):
            if key.startswith("APIARY_"):
                monkeypatch.delenv(key)

    clear()

    def apply(env: dict[str, str]) -> None:
        clear()
        for key, value in env.items():
            monkeypatch.setenv(key, value)

    return apply
