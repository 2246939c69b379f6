"""Realistic events for store tests and benchmarks (1-2 KiB each once serialized)."""

from __future__ import annotations

import random
import uuid
from typing import Any

from apiary.event import Event, Tenant, new_event

BASE_MS = 1_750_000_000_000.0  # 2025-06-15T15:06:40Z


def tenant(project: str = "proj-a") -> Tenant:
    return {"org_id": "org-1", "workspace_id": "ws-1", "project_id": project}


def session_events(
    rng: random.Random, *, session_id: str | None = None, start_ms: float = BASE_MS,
    children: int = 4, user_id: str = "user-1",
) -> list[Event]:
    """One session: a session event, a chain under it, then model and tool calls."""
    sid = session_id or str(uuid.UUID(int=rng.getrandbits(128)))
    session = new_event(
        event_id=sid, session_id=sid, event_type="session", event_name="chat-session",
        source="production", start_time=start_ms, end_time=start_ms + 5_000.0,
        duration=5_000.0, inputs={"query": "how do I reset my password?"},
        metadata={"user_id": user_id, "tier": "pro", "app": {"version": "1.4.2"}},
        user_properties={"user": user_id, "plan": "pro"},
    )
    chain_id = str(uuid.UUID(int=rng.getrandbits(128)))
    chain = new_event(
        event_id=chain_id, session_id=sid, parent_id=sid, event_type="chain",
        event_name="answer", source="production", start_time=start_ms + 1.0,
        end_time=start_ms + 4_900.0, duration=4_899.0,
        inputs={"question": "how do I reset my password?", "k": 4},
        outputs={"answer": "Open settings, choose Security, then Reset password."},
        metadata={"user_id": user_id, "retriever": {"name": "bm25", "top_k": 4}},
    )
    events: list[Event] = [session, chain]
    for i in range(children):
        t0 = start_ms + 10.0 + i * 1_000.0
        eid = str(uuid.UUID(int=rng.getrandbits(128)))
        if i % 2 == 0:
            prompt, completion = rng.randint(200, 900), rng.randint(20, 300)
            events.append(new_event(
                event_id=eid, session_id=sid, parent_id=chain_id, event_type="model",
                event_name="openai.chat", source="production", start_time=t0,
                end_time=t0 + 800.0, duration=800.0,
                config={"model": "gpt-4o-mini", "provider": "openai", "temperature": 0.2,
                        "max_tokens": 512, "template": [{"role": "system", "content":
                                                         "You are a helpful assistant."}]},
                inputs={"chat_history": [
                    {"role": "system", "content": "You are a helpful assistant. " * 10},
                    {"role": "user", "content": "How do I reset my password? " * 8},
                ]},
                outputs={"role": "assistant", "content": "Open settings and pick Security. "
                         * 14, "finish_reason": "stop"},
                metadata={"user_id": user_id, "prompt_tokens": prompt,
                          "completion_tokens": completion, "total_tokens": prompt + completion,
                          "cost": round((prompt * 0.15 + completion * 0.6) / 1e6, 8),
                          "request": {"id": eid[:8], "region": "us-east-1"}},
                metrics={"latency_ms": 800.0, "relevance": rng.random()},
                trace_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                span_id=uuid.UUID(int=rng.getrandbits(64)).hex[:16],
            ))
        else:
            events.append(new_event(
                event_id=eid, session_id=sid, parent_id=chain_id, event_type="tool",
                event_name="search_docs", source="production", start_time=t0,
                end_time=t0 + 120.0, duration=120.0,
                inputs={"query": "reset password", "filters": {"lang": "en", "limit": 4}},
                outputs={"results": [{"id": f"doc-{j}", "score": rng.random(),
                                      "snippet": "To reset your password open settings. " * 4}
                                     for j in range(3)]},
                metadata={"user_id": user_id, "index": "docs-v2"},
                error="timeout" if rng.random() < 0.1 else None,
            ))
    return events


def many_events(n: int, seed: int = 7, per_session: int = 6) -> list[Event]:
    """About ``n`` events in sessions of ``per_session`` events, times spread over a day."""
    rng = random.Random(seed)
    out: list[Event] = []
    i = 0
    while len(out) < n:
        out.extend(session_events(rng, start_ms=BASE_MS + i * 7_000.0,
                                  children=max(0, per_session - 2),
                                  user_id=f"user-{i % 50}"))
        i += 1
    return out[:n]


def event(**fields: Any) -> Event:
    """A small event with sane times, for targeted tests."""
    fields.setdefault("start_time", BASE_MS)
    fields.setdefault("end_time", fields["start_time"] + 10.0)
    fields.setdefault("duration", 10.0)
    fields.setdefault("event_type", "chain")
    return new_event(**fields)
