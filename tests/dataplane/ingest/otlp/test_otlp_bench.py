"""The benchmark's request is a valid, realistic one (keeps bench/otlp_mapping.py honest)."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from types import ModuleType

from apiary.dataplane.ingest.otlp import map_request

BENCH = Path(__file__).resolve().parents[4] / "bench" / "otlp_mapping.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("otlp_mapping_bench", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_request_maps_in_both_formats() -> None:
    bench = _bench()
    request = bench.build_request(1)
    protobuf = map_request(request.SerializeToString(), "application/x-protobuf")
    otlp_json = map_request(bench.to_otlp_json(request), "application/json")
    assert not protobuf.rejected
    assert len(protobuf.events) == bench.SPANS_PER_REQUEST
    assert protobuf.events == otlp_json.events
    types = Counter(e["event_type"] for e in protobuf.events)
    assert set(types) == {"session", "chain", "tool", "model"}
    session = next(e for e in protobuf.events if e["event_type"] == "session")
    assert all(e["session_id"] == session["event_id"] for e in protobuf.events)
    model = next(e for e in protobuf.events if e["event_type"] == "model")
    assert model["metadata"]["prompt_tokens"] > 0
    assert model["inputs"]["chat_history"][0]["role"] == "system"
