"""The event API tests' plane: ``tests/_dataplane.py``'s with three keys, one per module.

``api`` runs the data-plane app in-process over the session's real NATS and chDB, with a real
writer (see :func:`_dataplane.open_plane`). Keys: ``a`` (write + read, project A),
``reader`` (read only, project A), ``b`` (write + read, project B).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _dataplane import KeySpec, Plane, open_plane, until

from apiary.dataplane.auth import Permission
from apiary.queue import NatsServer
from apiary.store import EventStore

HONEYHIVE = Path(__file__).resolve().parents[2] / "fixtures" / "honeyhive"
__all__ = ["Api", "api", "honeyhive_body", "new_id", "until"]


def honeyhive_body(name: str) -> dict[str, Any]:
    """A REST body the unmodified HoneyHive SDK sent (tests/fixtures/honeyhive/)."""
    body: dict[str, Any] = json.loads((HONEYHIVE / f"{name}.json").read_text())
    return body


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Api(Plane):
    projects: dict[str, str] = field(default_factory=dict)

    async def search(self, body: dict[str, Any], who: str = "a") -> dict[str, Any]:
        result: dict[str, Any] = await self.ok("POST", "/v1/events/search", who, json=body)
        return result


@pytest.fixture(scope="module")
async def api(
    nats_server: NatsServer, store: EventStore, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Api]:
    suffix = uuid.uuid4().hex[:10]
    projects = {"a": f"proj-a-{suffix}", "b": f"proj-b-{suffix}"}
    both = (Permission.EVENTS_WRITE, Permission.EVENTS_READ)
    keys = {"a": KeySpec(projects["a"], both),
            "reader": KeySpec(projects["a"], (Permission.EVENTS_READ,)),
            "b": KeySpec(projects["b"], both)}
    async with open_plane(nats_server, store, tmp_path_factory.mktemp("api"), keys) as plane:
        yield Api(plane.http, plane.context, plane.store, plane.writer, plane.keys,
                  plane.subjects, plane.app, projects)
