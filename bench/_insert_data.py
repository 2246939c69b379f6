"""The events bench/insert stores: sessions of ~10 events with 0.2-0.6 KiB texts.

The generator bench/query used before issue 18 (it now loads that issue's data shape,
bench/_query_data.py); bench/insert keeps it, so that its figures compare across commits.
Deterministic for a seed.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from apiary.event import Event, Tenant, new_event

PROJECT = "bench-query"
TENANT: Tenant = {"org_id": "org-bench", "workspace_id": "ws-bench", "project_id": PROJECT}
END_MS = 1_748_736_000_000  # 2025-06-01T00:00:00Z: the newest event
DAY = 86_400_000
USERS = 5_000
RUNS, RUN_DATAPOINTS = 20, 200
BATCH = 50_000
MODELS = (("gpt-4o-mini", "openai", 0.15, 0.6), ("gpt-4o", "openai", 2.5, 10.0),
          ("claude-3-5-sonnet", "anthropic", 3.0, 15.0), ("llama-3.1-70b", "meta", 0.9, 0.9))
_WORDS = ("invoice", "refund", "policy", "customer", "order", "shipping", "delay", "apology",
          "escalation", "ticket", "summary", "context", "retrieval", "document", "chunk",
          "embedding", "ranking", "prompt", "template", "answer", "question", "account",
          "password", "settings", "security", "billing", "plan")


def _texts(rng: random.Random, n: int, size: int) -> list[str]:
    return [" ".join(rng.choice(_WORDS) for _ in range(size // 7))[:size] for _ in range(n)]


@dataclass
class Loaded:
    """What the measurements pick their targets from."""

    sessions: list[str] = field(default_factory=list)
    runs: dict[str, list[str]] = field(default_factory=dict)
    events: int = 0


class Generator:
    """Sessions of ~10 events, deterministic for a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.prompts = _texts(self.rng, 64, 400)
        self.answers = _texts(self.rng, 64, 600)
        self.snippets = _texts(self.rng, 64, 200)

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def session(self, start: float, run: tuple[str, int] | None) -> list[Event]:
        rng = self.rng
        sid = self._id()
        user = f"user-{rng.randrange(USERS)}"
        meta: dict[str, Any] = {"user_id": user, "env": "prod"}
        if run is not None:
            meta.update(run_id=run[0], dataset_id=f"ds-{run[0][:8]}",
                        datapoint_id=f"dp-{run[1]}")
        children = rng.randint(6, 10)
        end = start + 400.0 + children * 900.0
        out: list[Event] = [new_event(
            event_id=sid, session_id=sid, event_type="session", event_name="support-chat",
            source="evaluation" if run else "production", start_time=start, end_time=end,
            duration=end - start, metadata=dict(meta), user_properties={"plan": "pro"},
            inputs={"question": rng.choice(self.prompts)[:120]})]
        chain = self._id()
        metrics: dict[str, Any] = {}
        if run is not None:
            metrics = {"accuracy": round(rng.random(), 3), "relevance": round(rng.random(), 3),
                       "exact_match": rng.random() < 0.6}
        out.append(new_event(
            event_id=chain, session_id=sid, parent_id=sid, event_type="chain",
            event_name="answer", source=out[0]["source"], start_time=start + 5,
            end_time=end - 5, duration=end - start - 10, metadata=dict(meta),
            metrics=metrics, outputs={"answer": rng.choice(self.answers)}))
        t = start + 20.0
        for i in range(children):
            eid = self._id()
            if i % 2 == 0:
                model, provider, p_in, p_out = MODELS[rng.randrange(len(MODELS))]
                prompt, completion = rng.randint(200, 3000), rng.randint(20, 600)
                duration = float(rng.randint(300, 6000))
                out.append(new_event(
                    event_id=eid, session_id=sid, parent_id=chain, event_type="model",
                    event_name=f"{provider}.chat", source=out[0]["source"], start_time=t,
                    end_time=t + duration, duration=duration,
                    config={"model": model, "provider": provider, "temperature": 0.2},
                    inputs={"chat_history": [
                        {"role": "system", "content": "You are a helpful support agent."},
                        {"role": "user", "content": rng.choice(self.prompts)}]},
                    outputs={"role": "assistant", "content": rng.choice(self.answers)},
                    metadata={**meta, "prompt_tokens": prompt, "completion_tokens": completion,
                              "total_tokens": prompt + completion,
                              "cost": round((prompt * p_in + completion * p_out) / 1e6, 8)},
                    error="RateLimitError: 429" if rng.random() < 0.02 else None))
            else:
                duration = float(rng.randint(20, 900))
                out.append(new_event(
                    event_id=eid, session_id=sid, parent_id=chain, event_type="tool",
                    event_name=rng.choice(("search_docs", "lookup_order", "rerank")),
                    source=out[0]["source"], start_time=t, end_time=t + duration,
                    duration=duration, inputs={"query": rng.choice(self.snippets)[:80]},
                    outputs={"results": [rng.choice(self.snippets) for _ in range(2)]},
                    metadata=dict(meta), error="timeout" if rng.random() < 0.05 else None))
            t += duration + 50.0
        return out

    def all(self, n: int, loaded: Loaded) -> Iterator[list[Event]]:
        """Batches of about :data:`BATCH` events, ``n`` in total."""
        runs = [self._id() for _ in range(RUNS)]
        sessions = n // 10
        run_slots = {i * (sessions // (RUNS * RUN_DATAPOINTS + 1)): (runs[i // RUN_DATAPOINTS],
                                                                      i % RUN_DATAPOINTS)
                     for i in range(RUNS * RUN_DATAPOINTS)}
        batch: list[Event] = []
        made = s = 0
        while made < n:
            start = END_MS - 30 * DAY + min(1.0, s / max(1, sessions)) * 30 * DAY - 600_000
            run = run_slots.get(s)
            s += 1
            events = self.session(start, run)[:n - made]
            made += len(events)
            if run is not None:
                loaded.runs.setdefault(run[0], []).append(events[0]["session_id"])
            elif self.rng.random() < 0.01:
                loaded.sessions.append(events[0]["session_id"])
            batch.extend(events)
            if len(batch) >= BATCH:
                yield batch
                batch = []
        if batch:
            yield batch
        loaded.events = made


