"""Event updates in the writer: store every patch, merge it into its event, wait for late events.

``PUT /events`` (and a session started again under an existing id) reach the writers as
patches (:class:`~apiary.event.EventPatch`), in batches of kind ``updates``. For each flush
the writer loop calls :meth:`UpdateApplier.prepare` before enrichment, which

1. appends every patch to ``event_updates`` (so none is ever lost; a redelivered patch is
   the same row again), before the message is acknowledged;
2. turns a REST session event whose session is already stored into a patch of it (the
   session start is idempotent on ``session_id`` and merges metadata);
3. applies the patches of events that land in this flush to those events, in place, before
   they are enriched and inserted (an update that arrived before its span);
4. merges patches of events already stored: it reads the newest version, applies **all**
   of the event's patches in ``(version, patch_id)`` order, and inserts the result as a new
   version. Patches only set keys, so "stored version ⊕ all patches" equals "original ⊕
   all patches" whatever was applied before: merging is idempotent and independent of the
   order in which patches reached the writers. An unchanged result is not written again.

Events not stored yet stay *pending* in memory; a background task re-checks them (with
back-off, up to ``max_age_s``) and merges as soon as they are stored, whichever writer
stored them. At start it re-reads the events patched in the last ``startup_hours`` (a
restarted writer loses its memory, not the patches). The hot span path only pays a
dictionary look-up per event while something is pending.

A merged version carries, in the ``rollup_*`` columns, the difference of its cost and
tokens to the version it replaces, so the session rollups count every event once.

Known races (multi-writer): two writers merging the same event at the same moment both
write a complete merge (the one with more patches has the higher version), but both add
their rollup delta; an event re-sent as a new version (not a patch) after it was merged
loses the merged fields until a writer restarts or the event is patched again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

import pyarrow as pa
from nats.aio.msg import Msg

from apiary.dataplane.enrich import Enricher
from apiary.errors import PoisonMessage
from apiary.event import (
    API_KIND,
    PATCH_MERGE_FIELDS,
    UPDATES_KIND,
    Event,
    EventBatch,
    EventPatch,
    Tenant,
    apply_patch,
    new_event,
)
from apiary.store import ROLLUP_COLUMNS, ROLLUP_SOURCES, StoreClient, events_to_arrow

log = logging.getLogger("apiary.writer.updates")

_EVENT_KEYS = tuple(new_event().keys())
_TIME_KEYS = ("start_time", "end_time", "duration")


class Received(Protocol):
    """What the writer loop holds per message
    (:class:`apiary.dataplane.writer._received.FlushMessage`)."""

    msg: Msg
    batch: EventBatch
    deliveries: int


R = TypeVar("R", bound=Received)
#: ``WriterLoop._retrying``: run a store call until it succeeds or fails permanently.
Retrying = Callable[..., Awaitable[Any]]
DeadLetter = Callable[[Msg, Exception], Awaitable[None]]


@dataclass
class UpdateStats:
    patches_stored: int = 0
    sessions_merged: int = 0
    applied_on_arrival: int = 0
    merged_versions: int = 0
    unchanged_merges: int = 0
    pending: int = 0
    dropped_pending: int = 0
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(slots=True)
class _Pending:
    due: float
    delay: float
    since: float = field(default_factory=time.monotonic)


def validate_patch(raw: Any) -> EventPatch:
    """A patch from the wire, checked; :class:`PoisonMessage` if it cannot be applied."""
    if not isinstance(raw, dict):
        raise PoisonMessage("a patch is not an object")
    event_id, version = raw.get("event_id"), raw.get("version")
    if not isinstance(event_id, str) or not event_id:
        raise PoisonMessage("a patch has no event_id")
    if type(version) is not int or version < 0:
        raise PoisonMessage("a patch has no version", event_id=event_id)
    for name in (*PATCH_MERGE_FIELDS, "outputs"):
        if name in raw and not isinstance(raw[name], dict):
            raise PoisonMessage(f"patch field {name} is not an object", event_id=event_id)
    for name in ("duration", "end_time"):
        if name in raw:
            value = raw[name]
            if type(value) not in (int, float) or not math.isfinite(value):
                raise PoisonMessage(f"patch field {name} is not a number", event_id=event_id)
    children = raw.get("children_ids")
    if "children_ids" in raw and not (
        isinstance(children, list) and all(isinstance(c, str) for c in children)
    ):
        raise PoisonMessage("patch field children_ids is not a list of ids", event_id=event_id)
    return cast(EventPatch, raw)


def session_patch(event: Event, version: int) -> EventPatch:
    """A session event started again under an existing id, as a patch of that session."""
    patch: dict[str, Any] = {"event_id": event["event_id"], "version": version}
    source: dict[str, Any] = event  # type: ignore[assignment]
    for name in PATCH_MERGE_FIELDS:
        if source[name]:
            patch[name] = source[name]
    if event["outputs"]:
        patch["outputs"] = event["outputs"]
    if event["children_ids"]:
        patch["children_ids"] = event["children_ids"]
    return cast(EventPatch, patch)


def _nudged(ms: float) -> float:
    """Epoch ms nudged half a microsecond up, so that the row writer (which truncates
    ``ms * 1000``) stores the microsecond the value rounds to: a stored time read back and
    written again stays the same, whatever the float error of the round trip."""
    return (round(ms * 1000.0) + 0.5) / 1000.0 if ms > 0 else 0.0


def event_from_stored(row: dict[str, Any]) -> Event:
    """The :class:`Event` of a stored row (API shape, as ``latest_events`` returns it)."""
    fields = {k: row[k] for k in _EVENT_KEYS if k in row and row[k] is not None}
    fields["parent_id"] = row.get("parent_id")
    fields["error"] = row.get("error")
    return new_event(**fields)


def stored_tenant(row: dict[str, Any], project_id: str) -> Tenant:
    """The tenant of a stored row (as ``latest_events`` returns it)."""
    return {"org_id": row.get("org_id") or "", "workspace_id": row.get("workspace_id") or "",
            "project_id": project_id}


def for_write(event: Event) -> Event:
    """A copy of ``event`` whose times store exactly the microseconds they denote."""
    return {**event, "start_time": _nudged(event["start_time"]),
            "end_time": _nudged(event["end_time"])}


def same_event(a: Event, b: Event) -> bool:
    """Equal as stored: times within a microsecond or two, everything else exactly."""
    left: dict[str, Any] = a  # type: ignore[assignment]
    right: dict[str, Any] = b  # type: ignore[assignment]
    for key in _EVENT_KEYS:
        if key in _TIME_KEYS:
            if abs(float(left[key] or 0.0) - float(right[key] or 0.0)) > 0.002:
                return False
        elif left[key] != right[key]:
            return False
    return True


def column_pairs(r: Received, first: str, second: str) -> Iterable[tuple[Any, Any]]:
    """``(first, second)`` of each event in the message: from its Arrow rows while it has
    them (so the flush never turns them into dicts for this), else from its events."""
    table: pa.Table | None = getattr(r, "table", None)
    if table is not None:
        return zip(table.column(first).to_pylist(), table.column(second).to_pylist(),
                   strict=True)
    return ((e[first], e[second]) for e in r.batch["events"])  # type: ignore[literal-required]


def with_rollups(table: pa.Table, stored: dict[str, Any]) -> pa.Table:
    """``table`` (one merged event) plus its rollup deltas against the ``stored`` row."""
    for column in ROLLUP_COLUMNS:
        source = ROLLUP_SOURCES[column]
        new = table.column(source)[0].as_py()
        old = stored.get(source) or 0
        if column == "rollup_cost":
            table = table.append_column(column, pa.array([float(new) - float(old)],
                                                         pa.float64()))
        else:
            table = table.append_column(column, pa.array([int(new) - int(old)], pa.int64()))
    return table


class UpdateApplier:
    """One writer's part of event updates. Not thread-safe; runs on the writer's loop."""

    def __init__(
        self,
        *,
        store: StoreClient,
        enricher: Enricher,
        retrying: Retrying,
        dead_letter: DeadLetter,
        interval_s: float = 0.5,
        settle_s: float = 2.0,
        max_backoff_s: float = 30.0,
        max_age_s: float = 24 * 3600.0,
        capacity: int = 100_000,
        startup_hours: int = 24,
    ) -> None:
        self._store = store
        self._enricher = enricher
        self._retrying = retrying
        self._dead_letter = dead_letter
        self._interval = interval_s
        self._settle = settle_s
        self._max_backoff = max_backoff_s
        self._max_age = max_age_s
        self._capacity = capacity
        self._startup_hours = startup_hours
        self._pending: OrderedDict[tuple[str, str], _Pending] = OrderedDict()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.stats = UpdateStats()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start re-checking pending updates in the background (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def pending(self) -> set[tuple[str, str]]:
        """``(project_id, event_id)`` of events with patches not known to be merged."""
        return set(self._pending)

    # -- the flush hook -------------------------------------------------------------------

    def awaits_any(self, project_id: str, event_ids: Iterable[Any]) -> bool:
        """Whether patches wait for any of ``event_ids`` (strings or Arrow string scalars)."""
        if not self._pending:
            return False
        pending = self._pending
        return any((project_id, str(e)) in pending for e in event_ids)

    async def prepare(self, received: list[R]) -> None:
        """Store and apply the updates of one flush; call before enrichment.

        Poison update messages (a patch that cannot be applied) are dead-lettered whole,
        with stage ``updates``, and removed from ``received``. Anything else this raises
        fails the flush's ``updates`` stage, which the writer loop isolates (a flush may
        therefore be prepared more than once: storing a patch again is idempotent, and so
        is merging).
        """
        updates = [r for r in received if r.batch.get("kind") == UPDATES_KIND]
        api = [r for r in received if r.batch.get("kind") == API_KIND and r.batch["events"]]
        if not updates and not api and not self._pending:
            return
        patched: dict[str, tuple[Tenant, list[EventPatch], list[R]]] = {}
        for r in updates:
            try:
                patches = [validate_patch(p) for p in r.batch.get("patches") or []]
            except PoisonMessage as exc:
                await self._dead_letter(r.msg, exc)
                received.remove(r)
                continue
            self._collect(patched, r, patches)
        for r, patch in await self._sessions_started_again(api):
            self._collect(patched, r, [patch])
        for project_id, (tenant, patches, carriers) in patched.items():
            await self._retrying(self._store.insert_patches, tenant, patches, keep=carriers)
            self.stats.patches_stored += len(patches)
            now = time.monotonic()
            for patch in patches:
                self._remember(project_id, patch["event_id"], now)
        arriving = await self._apply_on_arrival(received)
        for project_id, (_, patches, carriers) in patched.items():
            ids = {p["event_id"] for p in patches} - arriving.get(project_id, set())
            if ids:
                await self._merge(project_id, sorted(ids), self._retrying, keep=carriers)

    @staticmethod
    def _collect(patched: dict[str, tuple[Tenant, list[EventPatch], list[R]]], r: R,
                 patches: list[EventPatch]) -> None:
        tenant = r.batch["tenant"]
        entry = patched.setdefault(tenant["project_id"], (tenant, [], []))
        entry[1].extend(patches)
        if r not in entry[2]:
            entry[2].append(r)

    async def _sessions_started_again(self, api: list[R]) -> list[tuple[R, EventPatch]]:
        """Session events of REST batches whose session exists: removed from their batch
        and returned as patches (a second start of a session merges into it)."""
        by_project: dict[str, list[tuple[R, Event]]] = {}
        for r in api:
            for event in r.batch["events"]:
                if event["event_type"] == "session":
                    by_project.setdefault(r.batch["tenant"]["project_id"], []).append((r, event))
        found: list[tuple[R, EventPatch]] = []
        for project_id, items in by_project.items():
            ids = [e["event_id"] for _, e in items]
            stored = await self._retrying(self._store.existing_versions, project_id, ids,
                                          keep=[r for r, _ in items])
            seen: set[str] = set()
            for r, event in items:
                event_id = event["event_id"]
                known = stored.get(event_id)
                first = event_id not in seen
                seen.add(event_id)
                if first and known is None:
                    continue  # a new session: stored as an event
                if first and r.deliveries > 1 and (known or 0) >= r.batch["version"]:
                    continue  # a redelivery of what is stored: the loop drops it
                r.batch["events"].remove(event)
                patch = session_patch(event, r.batch["version"])
                if len(patch) > 2:  # it sets something
                    found.append((r, patch))
                self.stats.sessions_merged += 1
        return found

    async def _apply_on_arrival(self, received: list[R]) -> dict[str, set[str]]:
        """Apply stored patches to the pending events that land in this flush, in place."""
        if not self._pending:
            return {}
        landing: dict[str, dict[str, list[Event]]] = {}
        for r in received:
            if r.batch.get("kind") == UPDATES_KIND:
                continue
            project_id = r.batch["tenant"]["project_id"]
            for event in r.batch["events"]:
                if (project_id, event["event_id"]) in self._pending:
                    landing.setdefault(project_id, {}).setdefault(
                        event["event_id"], []).append(event)
        applied: dict[str, set[str]] = {}
        now = time.monotonic()
        for project_id, events in landing.items():
            carriers = [r for r in received if r.batch["tenant"]["project_id"] == project_id]
            patches = await self._retrying(self._store.event_patches, project_id,
                                           sorted(events), keep=carriers)
            for event_id, copies in events.items():
                for event in copies:
                    for patch in patches.get(event_id, ()):
                        apply_patch(event, patch)
                self.stats.applied_on_arrival += 1
                # Checked again once stored: the event may be a stale redelivery the loop
                # drops, while the stored version still lacks a patch.
                entry = self._pending.get((project_id, event_id))
                if entry is not None:
                    entry.due, entry.delay = now + self._settle, self._settle
            applied[project_id] = set(events)
        return applied

    # -- merging into stored events -------------------------------------------------------

    async def _merge(self, project_id: str, event_ids: list[str], call: Retrying,
                     **keep: Any) -> set[str]:
        """Merge all patches of the stored ones of ``event_ids``; return those stored."""
        async with self._lock:
            rows: list[dict[str, Any]] = await call(
                self._store.latest_events, project_id, event_ids, **keep)
            if not rows:
                return set()
            stored = {row["event_id"] for row in rows}
            patches: dict[str, list[EventPatch]] = await call(
                self._store.event_patches, project_id, sorted(stored), **keep)
            tables: list[pa.Table] = []
            merged_events: list[Event] = []
            for row in rows:
                event_patches = patches.get(row["event_id"])
                if not event_patches:
                    continue
                before = event_from_stored(row)
                after = event_from_stored(row)
                for patch in event_patches:
                    apply_patch(after, patch)
                self._enricher.lookups(project_id, [after])  # learns a patched session
                self._enricher.enrich(project_id, [after])
                if same_event(before, after):
                    self.stats.unchanged_merges += 1
                    continue
                version = max(int(row["version"]),
                              max(p["version"] for p in event_patches)) + len(event_patches)
                table = events_to_arrow(stored_tenant(row, project_id), version,
                                        [for_write(after)])
                tables.append(with_rollups(table, row))
                merged_events.append(after)
            if tables:
                table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
                await call(self._store.insert_arrow, table, **keep)
                self.stats.merged_versions += len(tables)
            for event_id in stored:
                if self._pending.pop((project_id, event_id), None) is not None:
                    self.stats.pending = len(self._pending)
            return stored

    def _remember(self, project_id: str, event_id: str, now: float) -> None:
        key = (project_id, event_id)
        self._pending[key] = _Pending(due=now + self._interval, delay=self._interval)
        self._pending.move_to_end(key)
        while len(self._pending) > self._capacity:
            self._pending.popitem(last=False)
            self.stats.dropped_pending += 1
        self.stats.pending = len(self._pending)

    # -- background: pending updates ------------------------------------------------------

    async def _run(self) -> None:
        loaded = False
        while True:
            try:
                if not loaded:
                    recent = await self._store.recently_patched(
                        hours=self._startup_hours, limit=self._capacity)
                    now = time.monotonic()
                    for project_id, event_id in reversed(recent):
                        if (project_id, event_id) not in self._pending:
                            self._remember(project_id, event_id, now - self._interval)
                    loaded = True
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store may be away; try again next round
                self.stats.last_error = f"reconcile: {exc}"
                log.warning("re-checking pending updates failed", extra={"error": str(exc)})
            await asyncio.sleep(self._interval)

    async def reconcile(self, *, limit: int = 5_000) -> int:
        """Merge the due pending updates whose events are stored now; return how many."""
        now = time.monotonic()
        due: dict[str, list[str]] = {}
        count = 0
        for (project_id, event_id), entry in list(self._pending.items()):
            if now - entry.since > self._max_age:
                del self._pending[(project_id, event_id)]
                self.stats.dropped_pending += 1
            elif entry.due <= now and count < limit:
                due.setdefault(project_id, []).append(event_id)
                count += 1
        merged = 0
        for project_id, ids in due.items():
            stored = await self._merge(project_id, ids, _once)
            merged += len(stored)
            self._back_off((project_id, i) for i in ids if i not in stored)
        self.stats.pending = len(self._pending)
        return merged

    def _back_off(self, keys: Iterable[tuple[str, str]]) -> None:
        now = time.monotonic()
        for key in keys:
            entry = self._pending.get(key)
            if entry is not None:
                entry.delay = min(entry.delay * 2, self._max_backoff)
                entry.due = now + entry.delay


async def _once(call: Callable[..., Awaitable[Any]], *args: Any, **_: Any) -> Any:
    """Call a store method once (the background task retries by itself, next round)."""
    return await call(*args)


__all__ = ["UpdateApplier", "UpdateStats", "validate_patch"]
