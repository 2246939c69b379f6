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
    """Replace every APIARY_* variable of this process by the given environment."""
    for key in list(os.environ):
        if key.startswith("APIARY_"):
            monkeypatch.delenv(key)

    def apply(env: dict[str, str]) -> None:
        for key, value in env.items():
            monkeypatch.setenv(key, value)

    return apply
