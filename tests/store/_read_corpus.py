"""The seeded corpus and the reads of the read-path differential test (issue 18).

The store's read queries (export filters, paging, session list, session trees) are being
rebuilt for speed; their answers must stay exactly what they were. This module is shared by
both sides of that comparison:

- :func:`write_golden` (``python tests/store/_read_corpus.py OUT.json``), run once with the
  *old* tree on ``PYTHONPATH``, loads :func:`corpus` into a fresh embedded chDB through
  ``EventStore.insert_events`` and writes every answer of :func:`reads` to
  ``tests/fixtures/store/read_differential.json``;
- tests/store/test_read_differential.py loads the same corpus into a fresh database of the
  current tree and checks every answer against that file.

So nothing here may depend on what is being changed: the corpus is built from a seeded
``random.Random`` only, and :func:`answer` goes through the public ``EventStore`` methods the
routes call. Answers are canonical: export pages are the total and, in order, each event's
id with a digest of its full content (types kept, object keys sorted, so ``5`` and ``5.0``
differ but key order does not; projected pages are kept whole); session lists likewise,
each row without ``last_update`` (insert wall-clock time) and with summed costs rounded to
12 significant digits (summation order); trees keep their shape and a digest per node; a
rejected request is its error class and status.

The corpus (:data:`SEED`): 2,225 events in 250 sessions of project ``diff-a`` (some without
a session event, so their tree has a synthetic root) and look-alikes in ``diff-b`` that must
never show. Values cover every filterable column and nested paths of every JSON column, with
numbers, numeric strings, booleans, nulls, ISO and epoch times, lists, unicode and missing
keys; ``metadata.app.tenant`` is usually a string, sometimes null, a number or absent. 12 %
of events get a second version and 4 % a third (changing only what updates change:
:data:`apiary.event.PATCH_FIELDS`), one second version arrives after the third, and a slice
of a batch is inserted twice (a redelivery).
"""

from __future__ import annotations

import copy
import hashlib
import random
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from apiary.errors import ApiaryError
from apiary.event import Event, Tenant, new_event
from apiary.store import EventStore

SEED = 1818
PROJECT, OTHER = "diff-a", "diff-b"
BASE_MS = 1_750_000_000_000.0  # 2025-06-15T15:06:40Z
MINUTE = 60_000.0
SESSIONS = 250
TENANTS = 12
GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "store" / "read_differential.json"

_WORDS = ("invoice", "refund", "Policy", "customer", "order", "shipping", "delay", "apology",
          "needle", "ticket", "summary", "Ärger", "naïve", "résumé", "straße", "prompt",
          "100%", "under_score", "quote\"d", "back\\slash", "new\nline", "tab\tbed")
_SOURCES = ("production", "dev", "staging", "evaluation", "")
_MODELS = (("gpt-4o-mini", "openai"), ("gpt-4o", "openai"), ("claude-3-5-sonnet", "anthropic"),
           ("llama-3.1-70b", "meta"), ("", ""))


def tenant(project: str) -> Tenant:
    return {"org_id": "org-diff", "workspace_id": "ws-diff", "project_id": project}


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _score(rng: random.Random) -> Any:
    return rng.choice([round(rng.random(), 3), rng.randint(0, 10), f"{rng.random():.2f}",
                       "n/a", None, True, 0, -1.5, 1e20, 1e-7, "12.5", " 7 "])


def _flag(rng: random.Random) -> Any:
    return rng.choice([True, False, "true", "false", 1, 0, "yes", None])


def _when(rng: random.Random, start: float) -> Any:
    return rng.choice([
        start + rng.randint(-3, 3) * 3_600_000,
        "2025-06-15T12:00:00Z", "2025-06-16T00:00:00+02:00", "2025-06-14T23:59:59.5",
        "not a time", None])


def _metadata(rng: random.Random, base: dict[str, Any], start: float) -> dict[str, Any]:
    meta: dict[str, Any] = dict(base)
    if rng.random() < 0.7:
        meta["score"] = _score(rng)
    if rng.random() < 0.6:
        meta["flag"] = _flag(rng)
    if rng.random() < 0.5:
        meta["when"] = _when(rng, start)
    if rng.random() < 0.4:
        meta["tags"] = rng.sample(["alpha", "beta", "gamma", "delta"], rng.randint(0, 3))
    if rng.random() < 0.2:
        meta["label"] = None
    if rng.random() < 0.3:
        meta["deep"] = {"a": {"b": {"c": rng.choice(["x", "needle", 3, 4.5, None, False])}}}
    return meta


def _app(rng: random.Random) -> Any:
    roll = rng.random()
    tenant_value: Any
    if roll < 0.85:
        tenant_value = f"tenant-{rng.randrange(TENANTS)}"
    elif roll < 0.9:
        tenant_value = None
    elif roll < 0.95:
        tenant_value = rng.choice([7, 7.0, "7", "Tenant-7"])
    else:
        return None  # no app at all
    return {"tenant": tenant_value, "region": rng.choice(["us-east-1", "eu-west-1"]),
            "version": f"1.{rng.randrange(4)}.0"}


class _Corpus:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def session(self, s: int) -> list[Event]:
        rng = self.rng
        sid = self.id()
        start = BASE_MS + s * 7 * MINUTE + rng.randint(0, 59_999)
        app = _app(rng)
        user = rng.choice([f"user-{rng.randrange(30)}", "Ümit", "user-1", ""])
        base: dict[str, Any] = {"user_id": user}
        if app is not None:
            base["app"] = app
        source = rng.choice(_SOURCES)
        trace = uuid.UUID(int=rng.getrandbits(128)).hex
        events: list[Event] = []
        has_root = rng.random() < 0.75
        size = rng.randint(3, 12)
        end = start + size * 1_000.0 + rng.randint(0, 999)
        if has_root:
            events.append(new_event(
                event_id=sid, session_id=sid, event_type="session",
                event_name=rng.choice(["chat-session", "Chat-Session", "batch"]),
                source=source, start_time=start, end_time=end, duration=end - start,
                metadata=_metadata(rng, base, start),
                user_properties=rng.choice([{}, {"plan": rng.choice(["pro", "free"]),
                                                 "org": {"id": rng.randrange(5)}}]),
                inputs={"query": _words(rng, 4)}, trace_id=trace,
                span_id=uuid.UUID(int=rng.getrandbits(64)).hex[:16]))
        chain = self.id()
        child_ids = [self.id() for _ in range(size)]
        events.append(new_event(
            event_id=chain, session_id=sid, parent_id=sid if has_root else None,
            event_type="chain", event_name=rng.choice(["answer", "Answer", "plan"]),
            source=source, start_time=start + 1, end_time=end - 1, duration=end - start - 2,
            inputs={"question": _words(rng, 6), "k": rng.randint(1, 8)},
            outputs=rng.choice([{}, {"answer": {"text": _words(rng, 5)}}]),
            metadata=_metadata(rng, base, start),
            metrics=rng.choice([{}, {"accuracy": round(rng.random(), 3),
                                     "pass": rng.random() < 0.5,
                                     "label": rng.choice(["good", "bad"])}]),
            children_ids=child_ids[:rng.randint(0, 3)] if rng.random() < 0.5 else [],
            trace_id=trace))
        t = start + 10.0
        for i, eid in enumerate(child_ids):
            kind = rng.choice(["model", "model", "tool", "chain"])
            # Some children share a start time: export pages break ties by event_id.
            t += rng.choice([0.0, 17.0, 250.5, 999.0]) if i else 0.0
            duration = float(rng.choice([0, 3, 120, 800, 2_500.25]))
            parent = rng.choice([chain, chain, events[-1]["event_id"], "gone-parent"])
            meta = _metadata(rng, base, t)
            config: dict[str, Any] = {}
            if kind == "model":
                model, provider = rng.choice(_MODELS)
                config = {"model": model, "provider": provider,
                          "temperature": rng.choice([0, 0.2, 1]), "max_tokens": 512}
                prompt, completion = rng.randint(0, 900), rng.randint(0, 300)
                meta.update(prompt_tokens=rng.choice([prompt, str(prompt)]),
                            completion_tokens=completion,
                            total_tokens=prompt + completion,
                            cost=rng.choice([round((prompt * 0.15 + completion * 0.6) / 1e6, 8),
                                             "0.0005", "n/a", 0]))
            events.append(new_event(
                event_id=eid, session_id=sid, parent_id=parent, event_type=kind,
                event_name=rng.choice(["openai.chat", "search_docs", "Rerank", "lookup"]),
                source=rng.choice([source, source, "dev"]), start_time=t,
                end_time=t + duration, duration=duration, config=config,
                inputs=rng.choice([
                    {"chat_history": [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": _words(rng, 8)}]},
                    {"query": _words(rng, 3), "filters": {"lang": "en", "limit": 4}},
                    {}]),
                outputs=rng.choice([{"content": _words(rng, 6), "finish_reason": "stop"},
                                    {"results": [_words(rng, 2), _words(rng, 2)]}, {}]),
                metadata=meta,
                feedback=rng.choice([{}, {}, {"rating": rng.choice([1, 3, 5, "4"]),
                                              "liked": rng.random() < 0.5,
                                              "comment": _words(rng, 3)}]),
                metrics=rng.choice([{}, {"accuracy": round(rng.random(), 3),
                                         "pass": rng.random() < 0.5}]),
                error=rng.choice([None, None, None, "timeout", "RateLimitError: 429"]),
                trace_id=rng.choice([trace, ""]),
                span_id=uuid.UUID(int=rng.getrandbits(64)).hex[:16]))
        return events

    def update(self, event: Event) -> Event:
        """A later version: changes only what updates change (PATCH_FIELDS)."""
        rng = self.rng
        new = copy.deepcopy(event)
        roll = rng.randrange(6)
        meta = dict(new["metadata"])
        if roll == 0:
            meta["app"] = {"tenant": f"tenant-{rng.randrange(TENANTS)}", "region": "ap-south-1"}
        elif roll == 1:
            meta["score"] = _score(rng)
            meta["cost"] = rng.choice([0.5, "0.25", 0])
        new["metadata"] = meta
        if roll == 2:
            new["feedback"] = {"rating": rng.choice([1, 5]), "liked": rng.random() < 0.5,
                               "comment": "updated " + _words(rng, 2)}
        if roll == 3:
            new["outputs"] = {"content": "revised " + _words(rng, 3)}
        if roll == 4:
            new["duration"] = new["duration"] + 1_000.0
            new["end_time"] = new["end_time"] + 1_000.0
        if roll == 5:
            new["metrics"] = {**new["metrics"], "accuracy": round(rng.random(), 3)}
            new["config"] = {**new["config"], "temperature": 0.7}
        return new


def corpus(seed: int = SEED) -> list[tuple[str, int, list[Event]]]:
    """``(project, version, events)`` inserts in order (each one ``insert_events``)."""
    gen = _Corpus(seed)
    events = [e for s in range(SESSIONS) for e in gen.session(s)]
    third = len(events) // 3
    inserts: list[tuple[str, int, list[Event]]] = [
        (PROJECT, 1, events[:third]), (PROJECT, 1, events[third:2 * third]),
        (PROJECT, 1, events[2 * third:])]
    chosen = gen.rng.sample(events, len(events) * 16 // 100)
    second = [gen.update(e) for e in chosen[:len(events) * 12 // 100]]
    third_versions = [gen.update(e) for e in second[:len(events) * 4 // 100]]
    late = second[:5]  # these second versions arrive again after the third ones
    inserts += [(PROJECT, 2, second), (PROJECT, 3, third_versions), (PROJECT, 2, late),
                (PROJECT, 1, events[100:160])]  # a redelivered slice
    # Look-alikes in another project: same ids and values, must never show in PROJECT.
    other = [copy.deepcopy(e) for e in events[:40]]
    for e in other:
        e["metadata"] = {**e["metadata"], "app": {"tenant": "tenant-7"}, "leak": True}
    inserts.append((OTHER, 5, other))
    return inserts


def latest_events(seed: int = SEED, project: str = PROJECT) -> dict[str, Event]:
    """The newest version of every event of ``project`` as inserted (what a read sees)."""
    newest: dict[str, tuple[int, Event]] = {}
    for proj, version, events in corpus(seed):
        if proj != project:
            continue
        for e in events:
            held = newest.get(e["event_id"])
            if held is None or version >= held[0]:
                newest[e["event_id"]] = (version, e)
    return {eid: e for eid, (_, e) in newest.items()}


def load(store: EventStore, seed: int = SEED) -> None:
    """Insert :func:`corpus` through the normal insert path."""
    for project, version, events in corpus(seed):
        store.insert_events(tenant(project), version, events)


# --- the reads --------------------------------------------------------------------------

Read = dict[str, Any]


def _f(field: str, operator: str, value: Any = None, type_: str | None = "string"
       ) -> dict[str, Any]:
    out: dict[str, Any] = {"field": field, "operator": operator, "value": value}
    if type_ is not None:
        out["type"] = type_
    return out


def export_filters() -> list[list[dict[str, Any]]]:
    """The filter lists the export reads use (each also cross-checked in Python)."""
    t0 = BASE_MS + 60 * MINUTE
    singles: list[dict[str, Any]] = []
    strings = {
        "event_type": ["model", "session", "Model"], "event_name": ["Rerank", "rerank", "answer"],
        "source": ["production", "dev", ""], "error": ["timeout", "RateLimitError: 429"],
        "model": ["gpt-4o", "gpt-4o-mini", "GPT"], "provider": ["openai", "anth"],
        "trace_id": [""], "span_id": ["0"], "parent_id": ["gone-parent"],
    }
    for column, values in strings.items():
        for value in values:
            for op in ("is", "is not", "contains", "not contains"):
                singles.append(_f(column, op, value))
        singles += [_f(column, "exists"), _f(column, "not exists"),
                    _f(column, "greater than", values[0]), _f(column, "less than", values[0]),
                    _f(column, "greater than or equal", values[0]),
                    _f(column, "less than or equal", values[0])]
    singles += [_f("error", "is", None), _f("error", "is not", None),
                _f("event_name", "greater than", "5", "string"),
                _f("event_type", "=", "tool"), _f("event_type", "!=", "tool"),
                _f("event_type", "does not contain", "o")]
    numbers = {"duration": [0, 120, "800"], "prompt_tokens": [0, 450],
               "completion_tokens": [150], "total_tokens": [500, "500"],
               "cost": [0, 0.0001, "0.0005"]}
    for column, values in numbers.items():
        for value in values:
            for op in ("is", "is not", "greater than", "less than", "greater than or equal",
                       "less than or equal"):
                singles.append(_f(column, op, value, "number"))
        singles += [_f(column, "exists", None, "number"), _f(column, "not exists", None, "number"),
                    _f(column, ">", values[-1], "string"), _f(column, "lte", values[0], None)]
    for column in ("start_time", "end_time"):
        for value in (t0, "2025-06-15T17:00:00Z", "2025-06-15T20:00:00+02:00", str(t0)):
            for op in ("after", "before", "greater than or equal", "less than or equal"):
                singles.append(_f(column, op, value, "datetime"))
        singles += [_f(column, "exists", None, "datetime"), _f(column, "is", t0 + 1, "datetime")]
    for op in ("contains", "is", "not contains", "is not"):
        singles.append(_f("children_ids", op, "x"))
    singles += [_f("children_ids", "exists", None), _f("children_ids", "not exists", None)]
    for column in ("metadata", "inputs", "outputs", "config", "feedback", "metrics",
                   "user_properties"):
        singles += [_f(column, "exists"), _f(column, "not exists"),
                    _f(column, "contains", "needle"), _f(column, "not contains", "e"),
                    _f(column, "contains", '"rating":5')]
    nested: list[tuple[str, list[tuple[str, Any, str | None]]]] = [
        ("metadata.app.tenant", [("is", "tenant-7", "string"), ("is not", "tenant-7", "string"),
                                 ("contains", "TENANT-1", "string"), ("exists", None, None),
                                 ("not exists", None, None), ("is", 7, "number"),
                                 ("is", "7", "string"), ("greater than", "tenant-5", "string"),
                                 ("is", None, "string"), ("is not", None, "string"),
                                 ("not contains", "tenant", "string"), ("is", "tenant-7", "id")]),
        ("metadata.app", [("contains", "tenant-3", "string"), ("exists", None, None),
                          ("is", '{"tenant":"tenant-3"}', "string")]),
        ("metadata.app.region", [("is", "eu-west-1", "string"), ("contains", "south", None)]),
        ("metadata.user_id", [("is", "user-1", "string"), ("is", "ümit", "string"),
                              ("contains", "ümit", "string"), ("less than", "user-2", "string"),
                              ("is", "", "string"), ("exists", None, None)]),
        ("metadata.score", [("greater than", 0.5, "number"), ("less than", "0.5", "string"),
                            ("is", 0, "number"), ("is", "12.5", "number"),
                            ("greater than or equal", 1e19, "number"),
                            ("is", "n/a", "string"), ("is", True, "boolean"),
                            ("less than or equal", 7, "number"), ("exists", None, None),
                            ("not exists", None, None), ("contains", ".", "string"),
                            ("greater than", "a", "string")]),
        ("metadata.flag", [("is", True, "boolean"), ("is", False, "boolean"),
                           ("is", "true", "boolean"), ("is not", True, "boolean"),
                           ("is", "true", "string"), ("exists", None, None)]),
        ("metadata.when", [("after", "2025-06-15T12:00:00Z", "datetime"),
                           ("before", BASE_MS, "datetime"), ("after", BASE_MS, "string"),
                           ("is", "2025-06-15T12:00:00Z", "string"),
                           ("greater than", "2025-06-15T00:00:00Z", "datetime")]),
        ("metadata.tags", [("contains", "beta", "string"), ("is", '["alpha"]', "string"),
                           ("exists", None, None), ("is", "[]", "string")]),
        ("metadata.label", [("exists", None, None), ("not exists", None, None),
                            ("is", None, "string")]),
        ("metadata.deep.a.b.c", [("is", "needle", "string"), ("greater than", 4, "number"),
                                 ("is", False, "boolean"), ("exists", None, None),
                                 ("is", "4.5", "string")]),
        ("metadata.deep.a", [("contains", "needle", "string"), ("exists", None, None)]),
        ("metadata.cost", [("greater than", "0.0001", "string"), ("is", "n/a", "string"),
                           ("less than", 0.001, "number")]),
        ("metadata.prompt_tokens", [("greater than", 450, "number"), ("is", "450", "string")]),
        ("inputs.chat_history", [("contains", "needle", "string"), ("exists", None, None)]),
        ("inputs.query", [("contains", "REFUND", "string"), ("is", "refund", "string")]),
        ("inputs.filters.limit", [("is", 4, "number"), ("greater than", 3, "number")]),
        ("inputs.k", [("greater than", 4, "number"), ("is", "4", "string")]),
        ("outputs.content", [("contains", "revised", "string"), ("not contains", "e", "string")]),
        ("outputs.answer.text", [("contains", "needle", "string")]),
        ("outputs.finish_reason", [("is", "stop", "string")]),
        ("config.model", [("is", "gpt-4o", "string"), ("is", "", "string")]),
        ("config.temperature", [("greater than", 0.1, "number"), ("is", 0.7, "number"),
                                ("is", "0", "string"), ("is", 1, "boolean")]),
        ("feedback.rating", [("greater than or equal", 4, "number"), ("is", "4", "string"),
                             ("is", 4, "number"), ("not exists", None, None)]),
        ("feedback.liked", [("is", True, "boolean"), ("is", "false", "boolean")]),
        ("feedback.comment", [("contains", "updated", "string")]),
        ("metrics.accuracy", [("greater than", 0.5, "number"), ("less than", "0.25", "number")]),
        ("metrics.pass", [("is", True, "boolean"), ("is", "true", "string")]),
        ("metrics.label", [("is", "good", "string"), ("is not", "good", "string")]),
        ("user_properties.plan", [("is", "pro", "string"), ("exists", None, None)]),
        ("user_properties.org.id", [("is", 3, "number"), ("less than", 2, "number")]),
        ("metadata.missing.path", [("exists", None, None), ("is not", "x", "string")]),
    ]
    for field, cases in nested:
        for op, value, type_ in cases:
            singles.append(_f(field, op, value, type_))
    lists: list[list[dict[str, Any]]] = [[f] for f in singles]
    lists += [
        [_f("event_type", "is", "model"), _f("metadata.app.tenant", "is", "tenant-7")],
        [_f("metadata.app.tenant", "is", "tenant-3"), _f("error", "exists")],
        [_f("event_type", "is", "model"), _f("cost", "greater than", 0.00005, "number"),
         _f("model", "contains", "gpt")],
        [_f("session_id", "exists"), _f("metadata.flag", "is", True, "boolean"),
         _f("duration", "less than", 1000, "number")],
        [_f("metadata.user_id", "is", "user-1"), _f("event_type", "is not", "session"),
         _f("start_time", "after", "2025-06-15T18:00:00Z", "datetime")],
        [_f("feedback.rating", "greater than", 2, "number"), _f("metrics.pass", "is", True,
                                                                "boolean")],
        [_f("metadata", "contains", "needle"), _f("inputs", "not contains", "needle")],
        [_f("event_type", "is", "chain"), _f("children_ids", "exists")],
        [_f("metadata.app.tenant", "exists"), _f("metadata.app.tenant", "is not", "tenant-1"),
         _f("metadata.app.tenant", "less than", "tenant-5")],
        [_f("parent_id", "not exists"), _f("event_type", "is not", "session")],
    ]
    return lists


def reads(project: str = PROJECT) -> list[Read]:
    """Every read the differential test asks: ``{"kind", "name", ...arguments}``."""
    out: list[Read] = []
    for i, filters in enumerate(export_filters()):
        out.append({"kind": "export", "name": f"filter {i}: {filters}",
                    "request": {"filters": filters, "limit": 10}})
    t0, t1 = BASE_MS + 100 * MINUTE, BASE_MS + 900 * MINUTE
    ranges = [{"$gte": t0, "$lte": t1}, {"$gte": "2025-06-15T20:00:00Z"},
              {"$lte": str(t1)}, {"$gte": t1, "$lte": t0}]
    for i, date_range in enumerate(ranges):
        out.append({"kind": "export", "name": f"date range {i}",
                    "request": {"dateRange": date_range, "limit": 30}})
        out.append({"kind": "export", "name": f"date range {i} + model",
                    "request": {"dateRange": date_range, "limit": 30, "filters": [
                        _f("event_type", "is", "model")]}})
    for limit, page in ((7, 1), (7, 2), (7, 3), (7, 50), (100, 4), (1, 1), (1000, 3),
                        (1000, 1), (333, 8), (333, 9)):
        out.append({"kind": "export", "name": f"paging limit {limit} page {page}",
                    "request": {"limit": limit, "page": page}})
        out.append({"kind": "export", "name": f"paging tenant-7 limit {limit} page {page}",
                    "request": {"limit": limit, "page": page, "filters": [
                        _f("metadata.app.tenant", "is", "tenant-7")]}})
    out.append({"kind": "export", "name": "default limit", "request": {}})
    for projections in (["event_id", "metadata.app.tenant"], ["event_name", "cost", "model"],
                        ["inputs.chat_history", "outputs", "feedback.rating", "start_time"]):
        out.append({"kind": "export", "name": f"projections {projections}",
                    "request": {"projections": projections, "limit": 15, "filters": [
                        _f("event_type", "is", "model")]}})
    for bad in ({"filters": [_f("metadata.app.tenant", "resembles", "x")]},
                {"filters": [_f("no such field", "is", "x")]},
                {"filters": [_f("duration", "greater than", "abc", "number")]},
                {"filters": [_f("start_time", "after", "yesterday", "datetime")]},
                {"filters": [_f("event_type", "is", "x", "colour")]},
                {"limit": 0}, {"page": -1}, {"dateRange": {"$gte": "soon"}},
                {"projections": ["bad field!"]}, {"filters": "event_type"}):
        out.append({"kind": "export", "name": f"rejected {bad}", "request": bad})
    for limit, page in ((10, 1), (10, 2), (10, 25), (50, 1), (1000, 1), (7, 36)):
        out.append({"kind": "sessions", "name": f"sessions limit {limit} page {page}",
                    "limit": limit, "page": page, "date_range": None})
    for i, date_range in enumerate(ranges[:3]):
        out.append({"kind": "sessions", "name": f"sessions date range {i}", "limit": 20,
                    "page": 1, "date_range": date_range})
        out.append({"kind": "sessions", "name": f"sessions date range {i} page 2", "limit": 20,
                    "page": 2, "date_range": date_range})
    events = latest_events()
    session_ids = sorted({e["session_id"] for e in events.values()})
    rng = random.Random(SEED + 1)
    for sid in rng.sample(session_ids, 30):
        out.append({"kind": "tree", "name": f"tree {sid}", "session_id": sid})
    for sid in ("missing-session", ""):
        out.append({"kind": "tree", "name": f"tree {sid!r}", "session_id": sid})
    return out


def _digest(value: Any) -> str:
    data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _round(x: Any) -> Any:
    return float(f"{x:.12g}") if isinstance(x, float) else x


def _tree(node: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in node.items() if k != "children"}
    return {"id": node.get("event_id"), "digest": _digest(body),
            "children": [_tree(child) for child in node.get("children", [])]}


def answer(store: EventStore, project: str, read: Read) -> dict[str, Any]:
    """The canonical answer of ``read`` (see the module docstring)."""
    try:
        if read["kind"] == "export":
            result = store.export(project, read["request"])
            events = result["events"]
            if read["request"].get("projections"):
                return {"total": result["totalEvents"], "events": events}
            return {"total": result["totalEvents"],
                    "rows": [f"{e.get('event_id')} {_digest(e)}" for e in events]}
        if read["kind"] == "sessions":
            listed = store.list_sessions(project, limit=read["limit"], page=read["page"],
                                         date_range=read["date_range"])
            return {"total": listed["totalSessions"], "rows": [
                f"{s['session_id']} "
                + _digest({k: _round(v) for k, v in s.items() if k != "last_update"})
                for s in listed["sessions"]]}
        return {"tree": _tree(store.session_tree(project, read["session_id"]))}
    except ApiaryError as error:
        return {"error": type(error).__name__, "status": error.status}


def answers(store: EventStore, project: str = PROJECT) -> Iterator[tuple[Read, dict[str, Any]]]:
    for read in reads(project):
        yield read, answer(store, project, read)


def write_golden(path: Path) -> None:
    """Load the corpus into a fresh embedded chDB and write every answer to ``path``."""
    from apiary.store import EmbeddedClickHouse

    with tempfile.TemporaryDirectory(prefix="read-golden-") as tmp:
        driver = EmbeddedClickHouse(Path(tmp), database="golden")
        store = EventStore(driver)
        try:
            store.migrate()
            load(store)
            lines = [orjson.dumps({"name": read["name"], "answer": result})
                     for read, result in answers(store)]
        finally:
            store.close()
    # One answer a line: a changed answer is a one-line diff.
    path.write_bytes(b'{"seed": %d, "answers": [\n' % SEED + b",\n".join(lines) + b"\n]}\n")


if __name__ == "__main__":
    import apiary

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDEN
    print(f"recording the answers of {Path(apiary.__file__).parent} in {target}")
    write_golden(target)
