"""The online metric definitions of each project, as the data plane keeps them.

Definitions belong to the control plane; the data plane reads them with a caller's
credential only (it holds no control-plane secret, see
:mod:`apiary.dataplane.replica.control_plane`). So the data plane keeps its own copy of what runs
online, per project, in a JetStream key-value bucket (``evaluator-definitions``, durable like the
streams, readable by every writer on the cluster; docs/architecture.md, "Evaluation"), written:

- by the data plane's metric API (``/v1/metrics``) after every change it makes, with the
  caller's credential (:func:`refresh_project`);
- by ``POST /v1/evaluations/online/refresh``, for definitions changed directly at the
  control plane;
- on a federated data plane, by the federation controller's config push
  (:mod:`apiary.dataplane.federation.apply`), which replaces both: a metric changed at the
  control plane reaches this copy within about a second.

LLM judges spend the workspace's provider key on every sampled event, so an LLM metric
enters this copy only through a caller who holds ``proxy:use``: a refresh by anyone else
keeps the judges already deployed (the same id and version, as stored) and withholds new
ones (:func:`withhold_new_judges`).

Writers read it through :class:`DefinitionCache` (per project, ``ttl_s``, so a change takes
effect within that time; a bucket that cannot be read keeps the last copy in use). On a
federated data plane the cache keeps a copy at most :data:`FEDERATED_TTL_S`, so that a metric
created at the control plane scores new events within 5 s of its creation.

Each (metric id, version) keeps the time it was first deployed (``deployed_ns``): online
metrics score events that *arrive* after they are deployed, so a later re-write of an event
stored before (a redelivery, a replayed dead letter, anything that carries the event's
original arrival ``version``) never spends a new metric's judge tokens on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyDeletedError, KeyNotFoundError
from nats.js.kv import KeyValue

from apiary.dataplane.evaluation.ledger import open_bucket
from apiary.dataplane.evaluation.metrics import JUDGE_KIND, MetricSpec, online_specs
from apiary.errors import InvalidRequest
from apiary.settings import ApiarySettings
from apiary.store import Predicate, compile_predicates

log = logging.getLogger("apiary.dataplane.evaluation")

DEFINITIONS_BUCKET = "evaluator-definitions"
#: The longest a writer keeps a project's definitions on a federated data plane.
FEDERATED_TTL_S = 1.0


def _key(project_id: str) -> str:
    # Project ids are opaque: a hash is always a valid key.
    return hashlib.sha256(project_id.encode()).hexdigest()[:40]


class DefinitionStore:
    """The bucket of online definitions, one entry per project."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, settings: ApiarySettings) -> DefinitionStore:
        config = KeyValueConfig(
            bucket=DEFINITIONS_BUCKET, description="Apiary: online evaluators per project",
            history=1, storage=StorageType.FILE, replicas=settings.nats_replicas,
        )
        return cls(await open_bucket(js, config))

    async def put(self, project_id: str, specs: Sequence[MetricSpec]) -> None:
        """Store ``specs`` as the project's online metrics. Each (id, version) keeps the
        time it was first deployed (:meth:`deployed`); a new one is deployed now."""
        before = await self._doc(project_id)
        known: dict[str, int] = before.get("deployed_ns") or {}
        now = time.time_ns()
        deployed = {_deployed_key(s): int(known.get(_deployed_key(s), now)) for s in specs}
        doc = {"project_id": project_id, "updated_at": time.time(), "metrics": list(specs),
               "deployed_ns": deployed}
        await self._kv.put(_key(project_id), orjson.dumps(doc))

    async def _doc(self, project_id: str) -> dict[str, Any]:
        try:
            entry = await self._kv.get(_key(project_id))
        except (KeyNotFoundError, KeyDeletedError):
            return {}
        doc: dict[str, Any] = orjson.loads(entry.value or b"{}")
        if doc.get("project_id") != project_id:  # a hash collision: never run another's
            return {}
        return doc

    async def get(self, project_id: str) -> list[MetricSpec]:
        return [spec for spec, _ in await self.deployed(project_id)]

    async def deployed(self, project_id: str) -> list[tuple[MetricSpec, int]]:
        """The project's online specs, each with when it was deployed (ns since the epoch;
        0 for a spec stored before deployment times were kept: it scores every event)."""
        doc = await self._doc(project_id)
        metrics: list[MetricSpec] = doc.get("metrics") or []
        times: dict[str, int] = doc.get("deployed_ns") or {}
        return [(spec, int(times.get(_deployed_key(spec), 0))) for spec in metrics]


def _deployed_key(spec: MetricSpec) -> str:
    return f"{spec['id']}:{spec['version']}"


def withhold_new_judges(specs: Sequence[MetricSpec], deployed: Sequence[MetricSpec]
                        ) -> tuple[list[MetricSpec], list[MetricSpec]]:
    """``(kept, withheld)`` of ``specs`` for a refresh by a caller without ``proxy:use``.

    Every non-judge spec is kept. A judge (``llm``) spec is kept only if the same id and
    version is in ``deployed`` (the copy in force), and then as stored there; any other
    judge -- new, or a new version -- is withheld, so such a caller can stop a judge but
    never start or change one.
    """
    current = {(s["id"], s["version"]): s for s in deployed if s["kind"] == JUDGE_KIND}
    kept: list[MetricSpec] = []
    withheld: list[MetricSpec] = []
    for spec in specs:
        if spec["kind"] != JUDGE_KIND:
            kept.append(spec)
        elif (spec["id"], spec["version"]) in current:
            kept.append(current[(spec["id"], spec["version"])])
        else:
            withheld.append(spec)
    return kept, withheld


async def refresh_project(js: JetStreamContext, settings: ApiarySettings,
                          evaluators: Sequence[Mapping[str, Any]],
                          project_id: str, *, may_spend: bool = True,
                          ) -> tuple[list[MetricSpec], list[MetricSpec]]:
    """Store the online specs of ``evaluators`` (the control plane's list for the project);
    ``(stored, withheld)``. ``may_spend``: the caller holds ``proxy:use``; otherwise new
    LLM judges are withheld (:func:`withhold_new_judges`)."""
    specs = online_specs(evaluators)
    store = await DefinitionStore.open(js, settings)
    withheld: list[MetricSpec] = []
    if not may_spend:
        specs, withheld = withhold_new_judges(specs, await store.get(project_id))
    await store.put(project_id, specs)
    return specs, withheld


@dataclass(frozen=True, slots=True)
class OnlineMetric:
    spec: MetricSpec
    matches: Predicate
    #: When this version was deployed: events that arrived before (their batch ``version``
    #: is the arrival time) are never scored online, whatever re-writes them later.
    deployed_ns: int = 0

    def scores_arrival(self, arrived_ns: int) -> bool:
        """Whether an event that arrived at ``arrived_ns`` is this metric's to score."""
        return arrived_ns >= self.deployed_ns


@dataclass(slots=True)
class _Entry:
    metrics: list[OnlineMetric]
    expires: float


class DefinitionCache:
    """Per-project online metrics with their compiled filters, read at most every
    ``ttl_s`` seconds. Never raises: an unreadable bucket keeps the last copy (or none)."""

    def __init__(self, js: JetStreamContext, settings: ApiarySettings, *,
                 ttl_s: float | None = None, read_timeout_s: float = 2.0) -> None:
        self._js = js
        self._settings = settings
        if ttl_s is None:
            ttl_s = settings.evaluator_definitions_ttl_s
            if settings.federated:
                ttl_s = min(ttl_s, FEDERATED_TTL_S)
        self._ttl = ttl_s
        self._timeout = read_timeout_s
        self._store: DefinitionStore | None = None
        self._entries: dict[str, _Entry] = {}
        self._compiled: dict[tuple[str, int], OnlineMetric | None] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.reads = 0
        self.read_errors = 0

    async def metrics(self, project_id: str) -> list[OnlineMetric]:
        entry = self._entries.get(project_id)
        if entry is not None and entry.expires > time.monotonic():
            return entry.metrics  # the hot path: one dict look-up
        lock = self._locks.setdefault(project_id, asyncio.Lock())
        async with lock:
            entry = self._entries.get(project_id)
            if entry is not None and entry.expires > time.monotonic():
                return entry.metrics
            metrics = entry.metrics if entry is not None else []
            try:
                specs = await asyncio.wait_for(self._read(project_id), self._timeout)
                metrics = [m for m in (self._compile(s, at) for s, at in specs)
                           if m is not None]
                self.reads += 1
            except Exception as exc:  # keep evaluating with what we had
                self.read_errors += 1
                log.warning("online evaluators unreadable; keeping the last copy",
                            extra={"project_id": project_id, "error": repr(exc)})
            self._entries[project_id] = _Entry(metrics, time.monotonic() + self._ttl)
            return metrics

    async def _read(self, project_id: str) -> list[tuple[MetricSpec, int]]:
        if self._store is None:
            self._store = await DefinitionStore.open(self._js, self._settings)
        return await self._store.deployed(project_id)

    def _compile(self, spec: MetricSpec, deployed_ns: int = 0) -> OnlineMetric | None:
        key = (spec["id"], spec["version"])
        if key not in self._compiled:
            try:
                self._compiled[key] = OnlineMetric(spec, compile_predicates(spec["filters"]))
            except InvalidRequest as exc:
                log.warning("an online evaluator's filters are invalid; it is skipped",
                            extra={"metric_id": spec["id"], "error": str(exc)})
                self._compiled[key] = None
        found = self._compiled[key]
        # The spec may differ in fields that do not change the version (a rename).
        return None if found is None else OnlineMetric(spec, found.matches, deployed_ns)


__all__ = ["DEFINITIONS_BUCKET", "FEDERATED_TTL_S", "DefinitionCache", "DefinitionStore",
           "OnlineMetric", "refresh_project", "withhold_new_judges"]
