"""A seeded corpus of odd OTLP requests, and what the hot path makes of each.

Used by ``test_otlp_compiled_parity.py`` to compare the compiled hot path with its
sources: run as a script (``python parity_corpus.py OUT``), it writes the results of
whichever form the process runs (``APIARY_FROM_SOURCE``) to ``OUT``.

Every span draws its attributes from the keys the conventions know (slots and family
prefixes with suffixes) and unknown ones, with values of every OTLP type and the odd
ones: empty strings, JSON-looking strings, zero, extremes of int64, NaN and infinities,
bytes, nested arrays and kvlists, empty values.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _otlp_requests import proto_to_otlp_json, to_any_value

from apiary.dataplane.enrich import Enricher, PriceTable
from apiary.dataplane.ingest.otlp import _conventions, map_request
from apiary.store import events_to_arrow

SLOT_KEYS = sorted(_conventions._SLOTS)
FAMILY_PREFIXES = sorted(_conventions.FAMILY_PREFIX.values())
SUFFIXES = ["", ".0.role", ".0.content", ".1.message.content", ".model", ".a.b", ".0",
            ".temperature", ".max_tokens", ".0.tool_calls.0.function.name", ".a.0", ".x"]
JSONISH = ['{"a": 1}', '[{"role": "user", "content": "hi"}]', '["x", 2]', "{not json",
           '{"role": "assistant", "content": null}', "[]", "{}", '"quoted"', "null",
           '[{"role": "system", "parts": [{"type": "text", "content": "be brief"}]}]',
           '{"messages": [{"role": "user", "content": "q"}]}']
TYPES = ["session", "chain", "model", "tool", "SESSION", "Model", "bogus", ""]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(14 if depth < 2 else 10)
    if kind == 0:
        return ""
    if kind == 1:
        return rng.choice(JSONISH)
    if kind == 2:
        return rng.choice(TYPES)
    if kind == 3:
        return "text " * rng.randrange(1, 5)
    if kind == 4:
        return rng.choice([0, 1, -1, 2**63 - 1, -(2**63), 7, 1_000_000])
    if kind == 5:
        return rng.choice([0.0, 1.5, -2.25, float("nan"), float("inf"), 1e300])
    if kind == 6:
        return rng.choice([True, False])
    if kind == 7:
        return None
    if kind == 8:
        return rng.randbytes(rng.randrange(0, 6))
    if kind == 9:
        return "é✓ \x00 ünï"
    if kind in (10, 11):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice(["role", "content", "a", "b.c", ""]): _value(rng, depth + 1)
            for _ in range(rng.randrange(0, 4))}


def _key(rng: random.Random) -> str:
    draw = rng.random()
    if draw < 0.5:
        return rng.choice(SLOT_KEYS)
    if draw < 0.85:
        return rng.choice(FAMILY_PREFIXES) + rng.choice(SUFFIXES)
    return rng.choice(["custom", "custom.nested.key", "a.0", "a.1", "a", "service.name",
                       "exception.type", "_shadowed", "span_kind", "resource"])


def _attributes(rng: random.Random, count: int) -> list[KeyValue]:
    chosen = {_key(rng): _value(rng) for _ in range(count)}
    return [KeyValue(key=k, value=to_any_value(v)) for k, v in chosen.items()]


def request(rng: random.Random) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    rs = message.resource_spans.add()
    rs.resource.attributes.extend(_attributes(rng, rng.randrange(0, 3)))
    ss = rs.scope_spans.add()
    ss.scope.name = rng.choice(["", "openinference", "opentelemetry.instrumentation.openai"])
    trace_id = rng.randbytes(16)
    span_ids = [rng.randbytes(8) for _ in range(rng.randrange(1, 6))]
    for i, span_id in enumerate(span_ids):
        start = 1_700_000_000_000_000_000 + rng.randrange(10**12)
        span = Span(
            trace_id=trace_id, span_id=span_id,
            parent_span_id=b"" if i == 0 else rng.choice([*span_ids[:i], rng.randbytes(8)]),
            name=rng.choice(["root", "llm", "tool", ""]), kind=rng.randrange(0, 6),
            start_time_unix_nano=start, end_time_unix_nano=start + rng.randrange(-5, 10**9),
            status=Status(code=rng.randrange(0, 3), message=rng.choice(["", "boom"])),
        )
        span.attributes.extend(_attributes(rng, rng.randrange(0, 14)))
        for _ in range(rng.randrange(0, 3)):
            event = span.events.add()
            event.name = rng.choice(["exception", "gen_ai.user.message", "gen_ai.choice",
                                     "gen_ai.content.prompt", "note"])
            event.time_unix_nano = start + rng.randrange(10**9)
            event.attributes.extend(_attributes(rng, rng.randrange(0, 4)))
            event.attributes.extend([KeyValue(key=k, value=to_any_value(_value(rng)))
                                     for k in rng.sample(["exception.type", "exception.message",
                                                          "content", "role", "index"], 2)])
        if rng.random() < 0.2:
            link = span.links.add()
            link.trace_id, link.span_id = rng.randbytes(16), rng.randbytes(8)
        ss.spans.append(span)
    return message


def results(seed: int = 7, count: int = 400) -> list[str]:
    """``repr`` of the events, rejections and Arrow rows of each request (NaN-safe), sent
    as protobuf and as OTLP JSON: two results a request."""
    rng = random.Random(seed)
    enricher = Enricher(PriceTable.bundled())
    tenant = {"org_id": "o", "workspace_id": "w", "project_id": "p"}
    out: list[str] = []
    for _ in range(count):
        message = request(rng)
        for body, content_type in ((message.SerializeToString(), "application/x-protobuf"),
                                   (proto_to_otlp_json(message), "application/json")):
            try:
                mapped = map_request(body, content_type)
                enricher.enrich_request("p", mapped.events)
                rows = events_to_arrow(tenant, 1, mapped.events).to_pydict()  # type: ignore[arg-type]
                out.append(repr((mapped.events, mapped.rejected, rows)))
            except Exception as exc:  # the same failure in both forms is parity too
                out.append(f"{type(exc).__name__}: {exc}")
    return out


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(results()))
