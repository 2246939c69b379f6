"""Benchmark: OTLP decode + span-to-event mapping, µs per span.

Run: ``.venv/bin/python bench/otlp_mapping.py [--requests N] [--passes N]``

Builds ``--requests`` distinct realistic export requests of 100 spans each (a session
root, chain, tool and LLM children with GenAI attributes, 0.5-2 KiB prompt and completion
text, 15-25 attributes per span), encodes each as protobuf and as OTLP JSON, and times
``map_request`` over all of them. The requests differ in every per-span value (ids,
response ids, token counts, durations, text), so the decoder's cache of short attributes
only helps where real traffic repeats values too (session ids, model names, roles). The
caches are cleared before each pass; the best pass is reported, with decode and map apart.
Times are process CPU time (the machine is shared; wall time would count other jobs).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from apiary.dataplane.ingest.otlp import _conventions, _decode_proto, decode_traces, map_views

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._workload import any_value

SPANS_PER_REQUEST = 100
WORDS = [
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be",
    "by", "this", "are", "or", "from", "at", "an", "model", "token", "agent", "tool", "session",
    "prompt", "answer", "retrieval", "context", "vector", "query", "latency", "cost",
    "customer", "order", "invoice", "refund", "policy", "shipping",
]


def _text(rng: random.Random, low: int, high: int) -> str:
    size = rng.randint(low, high)
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def _span(rng: random.Random, trace_id: bytes, parent: bytes, name: str, start: int,
          attrs: dict[str, Any], kind: Any = Span.SPAN_KIND_INTERNAL) -> Span:
    span = Span(trace_id=trace_id, span_id=rng.randbytes(8), parent_span_id=parent,
                name=name, kind=kind, start_time_unix_nano=start,
                end_time_unix_nano=start + rng.randint(1_000_000, 900_000_000))
    span.attributes.extend(KeyValue(key=k, value=any_value(v)) for k, v in attrs.items())
    return span


def build_request(seed: int) -> ExportTraceServiceRequest:
    """One realistic 100-span export request (see the module docstring)."""
    rng = random.Random(seed)
    trace_id = rng.randbytes(16)
    session = f"{rng.getrandbits(128):032x}"
    common = {
        "honeyhive.session_id": session,
        "traceloop.association.properties.session_id": session,
        "honeyhive.project": "support-bot",
        "traceloop.association.properties.project": "support-bot",
        "honeyhive.source": "production",
        "traceloop.association.properties.source": "production",
    }
    start = 1_760_000_000_000_000_000 + seed * 10_000_000_000
    root = _span(rng, trace_id, b"", "session", start, {
        **common, "honeyhive_event_type": "session", "honeyhive_event_name": "support-chat",
        "honeyhive_inputs.question": _text(rng, 80, 200),
        "honeyhive_metadata.customer_tier": "gold", "honeyhive_metadata.region": "eu-west-1",
        "honeyhive_user_properties.user_id": f"user-{rng.randint(1, 10**6)}",
        "honeyhive_duration_ms": rng.uniform(1000, 9000),
    }, kind=Span.SPAN_KIND_SERVER)
    spans = [root]
    chains = [root]
    while len(spans) < SPANS_PER_REQUEST:
        parent = rng.choice(chains)
        t = start + len(spans) * 1_000_000
        roll = rng.random()
        if roll < 0.2:
            span = _span(rng, trace_id, parent.span_id, "plan_step", t, {
                **common, "honeyhive_event_type": "chain", "honeyhive_event_name": "plan_step",
                "honeyhive_inputs.query": _text(rng, 40, 160),
                "honeyhive_inputs.options": json.dumps({"depth": 2, "k": [1, 2, 3]}),
                "honeyhive_outputs.result": _text(rng, 100, 400),
                "honeyhive_metadata.step": len(spans), "honeyhive_duration_ms": rng.uniform(5, 500),
                "code.function": "plan_step", "code.lineno": rng.randint(10, 900),
                "thread.id": rng.randint(1, 64),
            })
            chains.append(span)
        elif roll < 0.5:
            span = _span(rng, trace_id, parent.span_id, "execute_tool search_orders", t, {
                **common, "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "search_orders", "gen_ai.tool.type": "function",
                "gen_ai.tool.call.id": f"call_{rng.getrandbits(64):x}",
                "gen_ai.tool.call.arguments": json.dumps(
                    {"customer": f"c{rng.randint(1, 9999)}", "limit": 5}),
                "gen_ai.tool.call.result": _text(rng, 500, 1500),
                "server.address": "orders.internal", "server.port": 8443,
                "http.request.method": "POST",
            }, kind=Span.SPAN_KIND_CLIENT)
        else:
            prompt = [
                {"role": "user", "parts": [{"type": "text", "content": _text(rng, 500, 1500)}]},
            ]
            answer = [{"role": "assistant", "finish_reason": "stop",
                       "parts": [{"type": "text", "content": _text(rng, 300, 800)}]}]
            span = _span(rng, trace_id, parent.span_id, "chat gpt-4o-mini", t, {
                **common, "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 1024,
                "gen_ai.request.top_p": 1.0,
                "gen_ai.usage.input_tokens": rng.randint(100, 2000),
                "gen_ai.usage.output_tokens": rng.randint(50, 800),
                "gen_ai.response.id": f"chatcmpl-{rng.getrandbits(96):x}",
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.system_instructions": json.dumps(
                    [{"type": "text", "content": "You are a helpful support agent."}]),
                "gen_ai.input.messages": json.dumps(prompt),
                "gen_ai.output.messages": json.dumps(answer),
                "server.address": "api.openai.com", "server.port": 443,
            }, kind=Span.SPAN_KIND_CLIENT)
        spans.append(span)
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    for key, value in {"service.name": "support-bot", "service.version": "1.4.2",
                       "deployment.environment.name": "production",
                       "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.language": "python",
                       "telemetry.sdk.version": "1.45.2"}.items():
        rs.resource.attributes.add(key=key, value=any_value(value))
    ss = rs.scope_spans.add()
    ss.scope.name = "support_bot.agent"
    ss.scope.version = "1.4.2"
    ss.spans.extend(spans)
    return request


def to_otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """The OTLP JSON encoding of ``request`` (hex ids, as the spec requires)."""
    doc = json_format.MessageToDict(request)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for field in ("traceId", "spanId", "parentSpanId"):
                    if field in span:
                        span[field] = __import__("base64").b64decode(span[field]).hex()
    return json.dumps(doc).encode()


def _clear_caches() -> None:
    _decode_proto._KV_CACHE.clear()
    _conventions._PLANS.clear()


def _time(bodies: list[bytes], content_type: str, passes: int) -> dict[str, float]:
    """Best pass of decode and map over all bodies, µs per span (process CPU time)."""
    spans = SPANS_PER_REQUEST * len(bodies)
    best = {"total": float("inf"), "decode": float("inf"), "map": float("inf")}
    for _ in range(passes):
        _clear_caches()
        decode_time = map_time = 0.0
        for body in bodies:
            t1 = time.process_time()
            views = decode_traces(body, content_type)
            t2 = time.process_time()
            map_views(views)
            t3 = time.process_time()
            decode_time += t2 - t1
            map_time += t3 - t2
        if decode_time + map_time < best["total"]:
            best = {"total": (decode_time + map_time) / spans * 1e6,
                    "decode": decode_time / spans * 1e6, "map": map_time / spans * 1e6}
    return best


def _calibrate() -> float:
    """ns per iteration of a trivial Python loop: how fast this interpreter runs now."""
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        x = 0
        for i in range(1_000_000):
            x += i
        best = min(best, time.process_time() - t0)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    requests = [build_request(seed) for seed in range(args.requests)]
    protobuf = [r.SerializeToString() for r in requests]
    otlp_json = [to_otlp_json(r) for r in requests]
    attrs = [len(s.attributes) for r in requests for s in r.resource_spans[0].scope_spans[0].spans]
    print(f"{args.requests} requests x {SPANS_PER_REQUEST} spans; "
          f"{min(attrs)}-{max(attrs)} attributes/span (mean {sum(attrs) / len(attrs):.1f}); "
          f"protobuf {sum(map(len, protobuf)) / len(protobuf) / 1024:.0f} KiB/request, "
          f"JSON {sum(map(len, otlp_json)) / len(otlp_json) / 1024:.0f} KiB/request")
    print(f"interpreter speed: {_calibrate():.0f} ns per trivial loop iteration")
    for label, bodies, content_type in (("protobuf", protobuf, "application/x-protobuf"),
                                        ("json", otlp_json, "application/json")):
        r = _time(bodies, content_type, args.passes)
        print(f"{label:9s} decode+map {r['total']:6.1f} us/span   "
              f"(decode {r['decode']:5.1f} + map {r['map']:5.1f})")


if __name__ == "__main__":
    main()
