"""Event updates (``PUT /events``) in ClickHouse: the ``event_updates`` log and its reads.

Patches (:class:`~apiary.event.EventPatch`) are appended to ``event_updates`` as they
arrive, one row each; the writer merges them into the ``events`` rows (see
:mod:`apiary.dataplane.writer._updates`). This module only converts and queries: patches ⇄ rows,
the patches of some events, the newest stored version of some events, and the events
patched recently. Every read takes the ``project_id`` it is scoped to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, cast

import orjson
import pyarrow as pa

from apiary.event import PATCH_FIELDS, EventPatch, Tenant
from apiary.store._filters import Params
from apiary.store._queries import (
    DedupMethod,
    Statement,
    _db,
    _require_project,
    deduplicated_events,
)
from apiary.store._rows import API_FIELDS, COMPUTED_COLUMNS

UPDATES_ARROW_SCHEMA = pa.schema([
    pa.field("org_id", pa.string(), nullable=False),
    pa.field("workspace_id", pa.string(), nullable=False),
    pa.field("project_id", pa.string(), nullable=False),
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("version", pa.uint64(), nullable=False),
    pa.field("patch_id", pa.string(), nullable=False),
    pa.field("patch", pa.binary(), nullable=False),
])

#: Columns of the ``events`` table that say what a row adds to its session's rollups
#: (migration 0005); a merged version of an event carries deltas in them.
ROLLUP_COLUMNS = ("rollup_cost", "rollup_prompt_tokens", "rollup_completion_tokens",
                  "rollup_total_tokens")
#: The derived column each rollup column defaults to.
ROLLUP_SOURCES = dict(zip(ROLLUP_COLUMNS, ("cost", "prompt_tokens", "completion_tokens",
                                          "total_tokens"), strict=True))


def patch_body(patch: EventPatch) -> dict[str, Any]:
    """The patch's fields without ``event_id`` and ``version`` (what ``patch`` stores)."""
    source: Mapping[str, Any] = patch
    return {name: source[name] for name in PATCH_FIELDS if name in source}


def patch_id(patch: EventPatch) -> str:
    """A content hash naming the patch among patches of the same event and version."""
    digest = hashlib.blake2b(orjson.dumps(patch_body(patch), option=orjson.OPT_SORT_KEYS),
                             digest_size=12, person=b"apiary-patch-v1")
    return digest.hexdigest()


def patches_to_arrow(tenant: Tenant, patches: Sequence[EventPatch]) -> pa.Table:
    """The ``event_updates`` insert for ``patches`` of ``tenant``."""
    n = len(patches)

    def repeat(value: str) -> pa.Array:
        return pa.repeat(pa.scalar(value, pa.string()), n)

    return pa.Table.from_arrays([
        repeat(tenant["org_id"]), repeat(tenant["workspace_id"]),
        repeat(tenant["project_id"]),
        pa.array([p["event_id"] for p in patches], pa.string()),
        pa.array([p["version"] for p in patches], pa.uint64()),
        pa.array([patch_id(p) for p in patches], pa.string()),
        pa.array([orjson.dumps(patch_body(p)) for p in patches], pa.binary()),
    ], schema=UPDATES_ARROW_SCHEMA)


def plan_patches(database: str, project_id: str, event_ids: Sequence[str]) -> Statement:
    """Every stored patch of ``event_ids``, in application order."""
    params = Params()
    project = params.bind(_require_project(project_id), "String")
    ids = params.bind(list(event_ids), "Array(String)")
    return Statement(
        "SELECT event_id, version, patch_id, patch "
        f"FROM {_db(database)}.event_updates "
        f"WHERE project_id = {project} AND event_id IN {ids} "
        "ORDER BY event_id, version, patch_id",
        params.values,
    )


def rows_to_patches(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[EventPatch]]:
    """``{event_id: [patch, ...]}`` in application order, duplicates (redeliveries) once."""
    found: dict[str, list[EventPatch]] = {}
    seen: set[tuple[str, int, str]] = set()
    for row in rows:
        key = (str(row["event_id"]), int(row["version"]), str(row["patch_id"]))
        if key in seen:
            continue
        seen.add(key)
        raw = row["patch"]
        body = orjson.loads(raw if isinstance(raw, (bytes, str)) else bytes(raw))
        patch = cast(EventPatch, {**body, "event_id": key[0], "version": key[1]})
        found.setdefault(key[0], []).append(patch)
    for patches in found.values():
        patches.sort(key=lambda p: (p["version"], patch_id(p)))
    return found


def plan_latest_events(database: str, project_id: str, ids: Sequence[str], *,
                       key: Literal["event_id", "session_id"] = "event_id",
                       method: DedupMethod = "final") -> Statement:
    """The newest stored version of each event whose ``key`` is in ``ids`` (events by id,
    or every event of sessions): every API column, the derived columns and ``version``."""
    params = Params()
    columns = [*API_FIELDS, *COMPUTED_COLUMNS, "version"]
    source = deduplicated_events(
        database, params, _require_project(project_id),
        [f"{key} IN {params.bind(list(ids), 'Array(String)')}"], columns, method,
    )
    return Statement(f"SELECT {', '.join(columns)} FROM {source}", params.values)


def plan_recent_patched(database: str, *, hours: int, limit: int) -> Statement:
    """``(project_id, event_id)`` of events patched in the last ``hours``, newest first."""
    params = Params()
    since = params.bind(hours, "UInt32")
    most = params.bind(limit, "UInt32")
    return Statement(
        f"SELECT project_id, event_id FROM {_db(database)}.event_updates "
        f"WHERE inserted_at >= now64(3) - toIntervalHour({since}) "
        f"GROUP BY project_id, event_id ORDER BY max(inserted_at) DESC LIMIT {most}",
        params.values,
    )
