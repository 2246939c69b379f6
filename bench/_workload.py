"""Realistic LLM traces as OTLP protobuf bodies, made fast enough not to be the bottleneck.

Each request holds ``traces`` traces of one session each: a session root span and
``children`` chain/tool/LLM spans with OpenTelemetry GenAI attributes and 0.5-2 KiB of
prompt and completion text. Bodies are serialized once per template with placeholder ids
and times; each request then splices fresh random ids, session ids and current times into
the pre-serialized bytes, so the load generator spends microseconds per request, not
milliseconds.
"""

from __future__ import annotations

import os
import random
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

_WORDS = [
    "the", "model", "returned", "a", "structured", "answer", "about", "invoices", "refunds",
    "policy", "customer", "order", "shipping", "delay", "apology", "escalation", "ticket",
    "summary", "context", "retrieval", "document", "chunk", "embedding", "vector", "score",
    "ranking", "prompt", "template", "system", "user", "assistant", "tool", "call", "json",
    "schema", "validation", "retry", "latency", "budget", "token", "usage", "cost", "cache",
    "hit", "miss",
]


def _text(rng: random.Random, size: int) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        w = rng.choice(_WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)[:size]


def any_value(value: Any) -> AnyValue:
    """``value`` as an OTLP ``AnyValue``; lists become array values, anything else a string."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    return AnyValue(string_value=str(value))


def _kv(key: str, value: str | int | float) -> KeyValue:
    return KeyValue(key=key, value=any_value(value))


@dataclass
class _Slot:
    kind: str  # "trace" | "span" | "session" | "start" | "end"
    index: int


class RequestFactory:
    """Makes unique OTLP protobuf bodies of ``traces`` x (1 + ``children``) spans."""

    def __init__(self, *, traces: int = 10, children: int = 9, templates: int = 16,
                 seed: int = 7) -> None:
        self.traces = traces
        self.spans_per_trace = children + 1
        self.spans = traces * self.spans_per_trace
        rng = random.Random(seed)
        self._templates = [self._template(rng) for _ in range(templates)]
        self._next = 0

    def _template(self, rng: random.Random) -> tuple[list[bytes], list[_Slot]]:
        placeholders: dict[bytes, _Slot] = {}

        def ph(size: int, slot: _Slot) -> bytes:
            while True:
                value = str(uuid.uuid4()).encode() if size == 36 else os.urandom(size)
                if value not in placeholders:
                    placeholders[value] = slot
                    return value

        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(
            [_kv("service.name", "support-bot"), _kv("deployment.environment", "prod")]
        )
        ss = rs.scope_spans.add()
        ss.scope.name = "bench.workload"
        span_i = 0
        for t in range(self.traces):
            trace_id = ph(16, _Slot("trace", t))
            session = ph(36, _Slot("session", t)).decode()
            root_id = ph(8, _Slot("span", span_i))
            span_i += 1
            start, end = ph(8, _Slot("start", t)), ph(8, _Slot("end", t))
            root = ss.spans.add(
                trace_id=trace_id, span_id=root_id, name="support_session",
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=struct.unpack("<Q", start)[0],
                end_time_unix_nano=struct.unpack("<Q", end)[0],
            )
            root.attributes.extend([
                _kv("honeyhive.session_id", session),
                _kv("honeyhive_event_type", "session"),
                _kv("honeyhive.source", "bench"),
                _kv("honeyhive_metadata.customer_tier", rng.choice(["free", "pro", "team"])),
                _kv("honeyhive_user_properties.user_id", f"user-{rng.randrange(10_000)}"),
            ])
            parent = root_id
            for c in range(self.spans_per_trace - 1):
                span_id = ph(8, _Slot("span", span_i))
                span_i += 1
                kind = ("chain", "tool", "llm")[c % 3]
                span = ss.spans.add(
                    trace_id=trace_id, span_id=span_id, parent_span_id=parent,
                    name=f"{kind}_{c}", kind=Span.SPAN_KIND_INTERNAL,
                    start_time_unix_nano=struct.unpack("<Q", start)[0],
                    end_time_unix_nano=struct.unpack("<Q", end)[0],
                )
                prompt = _text(rng, rng.randint(256, 1024))
                completion = _text(rng, rng.randint(256, 1024))
                attrs = [_kv("honeyhive.session_id", session)]
                if kind == "llm":
                    attrs += [
                        _kv("gen_ai.operation.name", "chat"),
                        _kv("gen_ai.provider.name", "openai"),
                        _kv("gen_ai.request.model", "gpt-4o-mini"),
                        _kv("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
                        _kv("gen_ai.request.temperature", 0.2),
                        _kv("gen_ai.request.max_tokens", 512),
                        _kv("gen_ai.usage.input_tokens", rng.randint(100, 900)),
                        _kv("gen_ai.usage.output_tokens", rng.randint(20, 300)),
                        _kv("gen_ai.response.finish_reasons", "stop"),
                        _kv("gen_ai.input.messages",
                            '[{"role":"user","parts":[{"type":"text","content":"'
                            + prompt + '"}]}]'),
                        _kv("gen_ai.output.messages",
                            '[{"role":"assistant","parts":[{"type":"text","content":"'
                            + completion + '"}],"finish_reason":"stop"}]'),
                    ]
                elif kind == "tool":
                    attrs += [
                        _kv("honeyhive_event_type", "tool"),
                        _kv("gen_ai.tool.name", "search_orders"),
                        _kv("honeyhive_inputs.query", prompt),
                        _kv("honeyhive_outputs.result", completion),
                    ]
                else:
                    attrs += [
                        _kv("honeyhive_event_type", "chain"),
                        _kv("honeyhive_inputs.question", prompt),
                        _kv("honeyhive_outputs.answer", completion),
                        _kv("honeyhive_metadata.step", c),
                    ]
                span.attributes.extend(attrs)
                if kind == "chain":
                    parent = span_id
            root.status.code = Status.STATUS_CODE_OK
        body = request.SerializeToString()
        # Cut the body at every placeholder, remembering what goes in each gap.
        found: list[tuple[int, int, _Slot]] = []
        for value, slot in placeholders.items():
            at = body.find(value)
            while at != -1:
                found.append((at, len(value), slot))
                at = body.find(value, at + 1)
        found.sort(key=lambda f: f[0])
        pieces, slots, cursor = [], [], 0
        for at, size, slot in found:
            pieces.append(body[cursor:at])
            slots.append(slot)
            cursor = at + size
        pieces.append(body[cursor:])
        return pieces, slots

    def make(self) -> tuple[bytes, list[str]]:
        """A fresh body and the session ids it carries."""
        pieces, slots = self._templates[self._next % len(self._templates)]
        self._next += 1
        ids = os.urandom(16 * self.traces + 8 * self.spans)
        sessions = [str(uuid.uuid4()) for _ in range(self.traces)]
        now = time.time_ns()
        out = [pieces[0]]
        for slot, piece in zip(slots, pieces[1:], strict=True):
            k, i = slot.kind, slot.index
            if k == "trace":
                out.append(ids[16 * i : 16 * i + 16])
            elif k == "span":
                base = 16 * self.traces + 8 * i
                out.append(ids[base : base + 8])
            elif k == "session":
                out.append(sessions[i].encode())
            elif k == "start":
                out.append(struct.pack("<Q", now - 2_000_000_000 + i * 1000))
            else:
                out.append(struct.pack("<Q", now - 1_000_000_000 + i * 1000))
            out.append(piece)
        return b"".join(out), sessions
