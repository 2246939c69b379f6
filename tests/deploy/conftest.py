"""Fixtures of the deployment tests: the kuberay/ documents and a clean APIARY_* environment."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from ._manifests import Doc, load_documents

SetEnv = Callable[[dict[str, str]], None]


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    return load_documents()


@pytest.fixture
def set_env(monkeypatch: pytest.MonkeyPatch) -> SetEnv:
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
