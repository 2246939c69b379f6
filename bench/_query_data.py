"""The data of bench/query: LLM-like traces of the read-latency issue (issue 18), loaded fast.

Shape: sessions of 8-12 spans (10 on average: a session, an ``answer`` chain, then
alternating model calls and tool calls) spread evenly over 30 days; model calls carry
GenAI fields as the OTLP mapping stores them (``config.model``/``provider``/``temperature``,
``metadata`` token counts, cost, response model and id) with 0.5-2 KiB prompts and
completions in ``inputs``/``outputs``; every event carries ``metadata.app.tenant`` (one of
:data:`TENANTS`), ``metadata.app.region``/``version`` and ``metadata.user_id``; 2 % of model
calls and 5 % of tool calls fail. Besides, :data:`RUNS` experiment runs of
:data:`RUN_DATAPOINTS` sessions whose chains carry ``metrics`` and ``metadata.run_id``.

Loading many millions of events through Python event dicts is slow (about 15k events/s), so
only a *template* of :data:`TEMPLATE_SESSIONS` sessions is generated and converted with
:func:`~apiary.store.events_to_arrow`, once; each copy is the same Arrow table with its ids
rewritten and its sessions moved in time (:class:`Copies`: no two copies of a session are
neighbours in time or id order), so the whole stays evenly spread over the 30 days. Every
copy goes in through :meth:`~apiary.store.EventStore.insert_arrow`, the writers' insert, so
the materialized views (session rollups, schemas) run as in production.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from apiary.event import Event, Tenant, new_event
from apiary.store import EventStore, events_to_arrow

PROJECT = "bench-query"
TENANT: Tenant = {"org_id": "org-bench", "workspace_id": "ws-bench", "project_id": PROJECT}
END_MS = 1_748_736_000_000  # 2025-06-01T00:00:00Z: the newest session starts before it
DAY = 86_400_000
SPAN_DAYS = 30
TENANTS = 50
USERS = 5_000
RUNS, RUN_DATAPOINTS = 20, 200
TEMPLATE_SESSIONS = 10_000  # ~100k events, ~150 MB of Arrow
MODELS = (("gpt-4o-mini", "openai", 0.15, 0.6), ("gpt-4o", "openai", 2.5, 10.0),
          ("claude-3-5-sonnet", "anthropic", 3.0, 15.0), ("llama-3.1-70b", "meta", 0.9, 0.9))
REGIONS = ("us-east-1", "eu-west-1", "ap-south-1")
_WORDS = ("the", "model", "returned", "a", "structured", "answer", "about", "invoices",
          "refunds", "policy", "customer", "order", "shipping", "delay", "apology",
          "escalation", "ticket", "summary", "context", "retrieval", "document", "chunk",
          "embedding", "vector", "score", "ranking", "prompt", "template", "system", "user",
          "assistant", "tool", "call", "json", "schema", "validation", "retry", "latency",
          "budget", "token", "usage", "cost", "cache", "hit", "miss", "account", "password",
          "settings", "security", "billing", "plan", "refund", "warehouse", "carrier")
_ID_COLUMNS = ("session_id", "event_id", "parent_id", "trace_id")


def tenant_name(i: int) -> str:
    return f"tenant-{i}"


def _text(rng: random.Random, size: int) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        word = rng.choice(_WORDS)
        out.append(word)
        n += len(word) + 1
    return " ".join(out)[:size]


@dataclass
class Targets:
    """What the measurements pick their targets from (kept beside a ``--dir``)."""

    ten_span_sessions: list[str] = field(default_factory=list)
    runs: dict[str, list[str]] = field(default_factory=dict)
    events: int = 0


class Generator:
    """Deterministic sessions for a seed (the template and the experiment runs)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        # A pool of texts, so that generating is not the bottleneck; an event's prompt is a
        # pool text with a per-event prefix, so no two prompts are the same bytes.
        self.texts = [_text(self.rng, self.rng.randint(512, 2048)) for _ in range(1024)]
        self.shorts = [_text(self.rng, self.rng.randint(40, 160)) for _ in range(256)]

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _prompt(self) -> str:
        return f"[{self.rng.getrandbits(32):08x}] {self.rng.choice(self.texts)}"

    def session(self, start: float, run: tuple[str, int] | None = None) -> list[Event]:
        """One session starting at ``start`` (epoch ms); its events, session first."""
        rng = self.rng
        sid = self._id()
        trace = uuid.UUID(int=rng.getrandbits(128)).hex
        user = f"user-{rng.randrange(USERS)}"
        app = {"tenant": tenant_name(rng.randrange(TENANTS)), "region": rng.choice(REGIONS),
               "version": f"2.{rng.randrange(8)}.{rng.randrange(20)}"}
        meta: dict[str, Any] = {"app": app, "user_id": user, "env": "prod"}
        if run is not None:
            meta.update(run_id=run[0], dataset_id=f"ds-{run[0][:8]}", datapoint_id=f"dp-{run[1]}")
        source = "evaluation" if run else "production"
        size = rng.randint(8, 12) if run is None else 10  # events of the session
        end = start + 400.0 + size * 900.0

        def span() -> str:
            return uuid.UUID(int=rng.getrandbits(64)).hex[:16]

        out: list[Event] = [new_event(
            event_id=sid, session_id=sid, event_type="session", event_name="support_session",
            source=source, start_time=start, end_time=end, duration=end - start,
            metadata={**meta, "customer_tier": rng.choice(("free", "pro", "team"))},
            user_properties={"user_id": user, "plan": rng.choice(("free", "pro", "team"))},
            inputs={"question": rng.choice(self.shorts)}, trace_id=trace, span_id=span())]
        chain = self._id()
        metrics: dict[str, Any] = {}
        if run is not None:
            metrics = {"accuracy": round(rng.random(), 3), "relevance": round(rng.random(), 3),
                       "exact_match": rng.random() < 0.6}
        out.append(new_event(
            event_id=chain, session_id=sid, parent_id=sid, event_type="chain",
            event_name="answer", source=source, start_time=start + 5, end_time=end - 5,
            duration=end - start - 10, metadata={**meta, "step": 0, "span_kind": "internal"},
            metrics=metrics, inputs={"question": self._prompt()},
            outputs={"answer": rng.choice(self.texts)}, trace_id=trace, span_id=span()))
        t = start + 20.0
        for i in range(size - 2):
            eid = self._id()
            if i % 2 == 0:
                model, provider, p_in, p_out = MODELS[rng.randrange(len(MODELS))]
                prompt, completion = rng.randint(200, 3000), rng.randint(20, 600)
                duration = float(rng.randint(300, 6000))
                out.append(new_event(
                    event_id=eid, session_id=sid, parent_id=chain, event_type="model",
                    event_name=f"{provider}.chat", source=source, start_time=t,
                    end_time=t + duration, duration=duration,
                    config={"model": model, "provider": provider, "temperature": 0.2,
                            "max_tokens": 512},
                    inputs={"chat_history": [
                        {"role": "system", "content": "You are a helpful support agent."},
                        {"role": "user", "content": self._prompt()}]},
                    outputs={"role": "assistant", "content": rng.choice(self.texts),
                             "finish_reason": "stop"},
                    metadata={**meta, "prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion,
                              "cost": round((prompt * p_in + completion * p_out) / 1e6, 8),
                              "response_model": f"{model}-2024-08-06",
                              "response_id": f"chatcmpl-{rng.getrandbits(48):012x}",
                              "span_kind": "client"},
                    error="RateLimitError: 429" if rng.random() < 0.02 else None,
                    trace_id=trace, span_id=span()))
            else:
                duration = float(rng.randint(20, 900))
                name = rng.choice(("search_docs", "lookup_order", "rerank"))
                out.append(new_event(
                    event_id=eid, session_id=sid, parent_id=chain, event_type="tool",
                    event_name=name, source=source, start_time=t, end_time=t + duration,
                    duration=duration, config={"tool": {"name": name, "type": "function"}},
                    inputs={"query": rng.choice(self.shorts)},
                    outputs={"result": rng.choice(self.texts)},
                    metadata={**meta, "tool_call_id": f"call_{rng.getrandbits(40):010x}",
                              "span_kind": "internal"},
                    error="timeout" if rng.random() < 0.05 else None,
                    trace_id=trace, span_id=span()))
            t += duration + 50.0
        return out

    def template(self, sessions: int) -> Template:
        """``sessions`` production sessions evenly over the 30 days (gap :func:`gap_ms`)."""
        events: list[Event] = []
        ids: list[str] = []
        of_row: list[int] = []
        ten: list[tuple[int, int]] = []
        for s in range(sessions):
            made = self.session(END_MS - SPAN_DAYS * DAY + s * gap_ms(sessions))
            events.extend(made)
            ids.append(made[0]["session_id"])
            of_row.extend([s] * len(made))
            if len(made) == 10:
                ten.append((s, len(events)))
        return Template(events_to_arrow(TENANT, 1, events), ids,
                        pa.array(of_row, pa.int32()), ten)

    def runs(self) -> tuple[list[Event], dict[str, list[str]]]:
        """:data:`RUNS` runs of :data:`RUN_DATAPOINTS` sessions, spread over the 30 days."""
        run_ids = [self._id() for _ in range(RUNS)]
        events: list[Event] = []
        runs: dict[str, list[str]] = {}
        total = RUNS * RUN_DATAPOINTS
        for i in range(total):
            run_id = run_ids[i // RUN_DATAPOINTS]
            start = END_MS - SPAN_DAYS * DAY + (i + 0.5) * (SPAN_DAYS * DAY / total)
            made = self.session(start, (run_id, i % RUN_DATAPOINTS))
            runs.setdefault(run_id, []).append(made[0]["session_id"])
            events.extend(made)
        return events, runs


def gap_ms(sessions: int) -> float:
    """Time between two consecutive template sessions."""
    return SPAN_DAYS * DAY / sessions


@dataclass
class Template:
    """The template's rows and, per template session, its id; which session each row is
    of; ``(session, rows up to its end)`` of the sessions of exactly 10 events."""

    table: pa.Table
    session_ids: list[str]
    session_of_row: pa.Array
    ten: list[tuple[int, int]]


class Copies:
    """Where each template session goes in each of ``copies`` copies.

    Copy ``k`` puts template session ``s`` in time slot ``slot_k(s) = (perm[s] + k * step)
    mod sessions`` (``perm`` a random permutation, ``step`` coprime to ``sessions``) plus
    ``k / copies`` of a slot, and gives its ids the 8-hex-digit prefix
    ``id_slot_k(s) * copies + k``, where ``id_slot_k`` is built the same way from another
    permutation (unique per copy and session, and id order independent of time order, as
    with random ids). In either order, the sessions of one slot are different template
    sessions (``k * step`` differs mod ``sessions`` for each copy), and so are the last of
    a slot and the first of the next (``step`` is chosen so): no two copies of a session
    are neighbours, so a granule holds as many different sessions (tenants, users, models)
    as it would with that many real ones, and skip indexes are not flattered by runs of
    identical rows or by ids that follow time.
    """

    def __init__(self, template: Template, copies: int, seed: int) -> None:
        self.template = template
        self.copies = copies
        sessions = len(template.session_ids)
        if copies >= sessions:
            raise ValueError(f"{copies} copies need a template of more than {copies} sessions")
        rng = random.Random(seed)
        step = next(c for c in range(sessions // 3 + 1, 2 * sessions)
                    if math.gcd(c, sessions) == 1 and ((copies - 1) * c + 1) % sessions)

        def slots() -> list[list[int]]:
            perm = rng.sample(range(sessions), sessions)
            return [[(perm[s] + k * step) % sessions for s in range(sessions)]
                    for k in range(copies)]
        self.slots, self.id_slots = slots(), slots()
        self.gap = gap_ms(sessions)

    def prefix(self, copy: int, session: int) -> str:
        return f"{self.id_slots[copy][session] * self.copies + copy:08x}"

    def session_id(self, copy: int, session: int) -> str:
        """The id of template session ``session`` in copy ``copy``."""
        return self.prefix(copy, session) + self.template.session_ids[session][8:]

    def table(self, copy: int) -> pa.Table:
        """Copy ``copy`` of the template: every id (``''`` stays ``''``: no parent) with its
        session's prefix, times moved to its session's slot."""
        template = self.template
        sessions = len(template.session_ids)
        prefixes = pa.array([self.prefix(copy, s) for s in range(sessions)])
        shifts = pa.array([round(((self.slots[copy][s] - s) * self.gap
                                  + copy * self.gap / self.copies) * 1000)
                           for s in range(sessions)], pa.int64()).cast(pa.duration("us"))
        row_prefix = pc.take(prefixes, template.session_of_row)
        row_shift = pc.take(shifts, template.session_of_row)
        table = template.table
        columns: dict[str, Any] = {}
        for name in _ID_COLUMNS:
            column = table.column(name)
            renamed = pc.binary_join_element_wise(
                row_prefix, pc.utf8_slice_codeunits(column, 8), pa.scalar(""))
            columns[name] = pc.if_else(pc.equal(pc.utf8_length(column), 0), column, renamed)
        for name in ("start_time", "end_time"):
            column = table.column(name)
            columns[name] = pc.add(column, row_shift).cast(column.type)
        return pa.Table.from_arrays([columns.get(f.name, table.column(f.name))
                                     for f in table.schema], schema=table.schema)


def load(store: EventStore, n: int, seed: int,
         progress: Callable[[str], None] = print, *,
         template_sessions: int = TEMPLATE_SESSIONS) -> Targets:
    """Load ``n`` events (the runs, then template copies until ``n``); returns the targets
    and prints progress and the load rate."""
    started = time.perf_counter()
    gen = Generator(seed)
    targets = Targets()
    run_events, targets.runs = gen.runs()
    run_events = run_events[:n]
    store.insert_arrow(events_to_arrow(TENANT, 1, run_events))
    template = gen.template(template_sessions)
    progress(f"  generated and inserted {len(run_events):,} run events, generated a "
             f"template of {template.table.num_rows:,} in {time.perf_counter() - started:.1f} s")
    remaining = n - len(run_events)
    count = -(-remaining // template.table.num_rows) if remaining > 0 else 0
    copies = Copies(template, count, seed)
    loaded = len(run_events)
    insert_s = 0.0
    for copy in range(count):
        table = copies.table(copy)
        if table.num_rows > remaining:
            table = table.slice(0, remaining)
        remaining -= table.num_rows
        t0 = time.perf_counter()
        store.insert_arrow(table)
        insert_s += time.perf_counter() - t0
        loaded += table.num_rows
        elapsed = time.perf_counter() - started
        progress(f"  copy {copy + 1}/{count}: {loaded:>11,} events, {elapsed:6.0f} s, "
                 f"{loaded / elapsed:,.0f} events/s")
        if copy < 100:  # a session cut off by the last copy's slice is no target
            targets.ten_span_sessions.extend(
                copies.session_id(copy, s) for s, end in template.ten[:50]
                if end <= table.num_rows)
    targets.events = loaded
    total = time.perf_counter() - started
    progress(f"  loaded {loaded:,} events in {total:.1f} s ({loaded / total:,.0f} events/s; "
             f"inserts {insert_s:.1f} s, {loaded / max(insert_s, 1e-9):,.0f} rows/s)")
    return targets
