"""Classification plans: cached per key tuple, provisional first, bounded."""

from __future__ import annotations

from typing import Any

from apiary.dataplane.ingest.otlp import _conventions
from apiary.dataplane.ingest.otlp._conventions import FAMILY, REST, SLOT, classify, plan_for
from apiary.dataplane.ingest.otlp._mapping import map_span
from apiary.dataplane.ingest.otlp._model import SpanView


def _span(attrs: dict[str, Any]) -> SpanView:
    return SpanView("ab" * 16, "cd" * 8, "", "s", 1, 1_000_000, 2_000_000, attrs, (), (), 0,
                    "", "", 0, 0, 0, 0, None)


def test_classification_kinds() -> None:
    assert classify("honeyhive.session_id") == (SLOT, "session", 0)
    assert classify("session.id") == (SLOT, "session", 3)
    assert classify("honeyhive_inputs.a.b") == (FAMILY, "inputs", "a.b")
    assert classify("honeyhive_inputs") == (FAMILY, "inputs", "")
    assert classify("gen_ai.request.model") == (SLOT, "model", 0)
    assert classify("gen_ai.request.top_k") == (FAMILY, "request", "top_k")
    assert classify("gen_ai.requests.x")[0] == REST
    assert classify("gen_ai.prompt_tokens")[0] == REST


def test_plans_are_provisional_once_then_compiled_and_map_alike() -> None:
    attrs = {"server.address": "h", "server.port": 1, "honeyhive.session_id": "s",
             "unique.key.for.this.test": True}
    keys = tuple(attrs)
    _conventions._PLANS.pop(keys, None)
    first = map_span(_span(attrs), None, {}, "otel")[0]
    assert _conventions._PLANS[keys].provisional
    assert _conventions._PLANS[keys].rest_build is None
    second = map_span(_span(attrs), None, {}, "otel")[0]
    assert not _conventions._PLANS[keys].provisional
    assert _conventions._PLANS[keys].rest_build is not None
    third = map_span(_span(attrs), None, {}, "otel")[0]
    assert first == second == third
    assert first["metadata"]["server"] == {"address": "h", "port": 1}


def test_plan_cache_is_bounded() -> None:
    for i in range(_conventions._PLANS_MAX_ENTRIES + 10):
        plan_for({f"random.key.{i}": 1})
    assert len(_conventions._PLANS) <= _conventions._PLANS_MAX_ENTRIES


def test_alias_losers_are_compared_in_bulk() -> None:
    same = {"honeyhive.session_id": "a", "traceloop.association.properties.session_id": "a"}
    event = map_span(_span(same), None, {}, "otel")[0]
    assert event["session_id"] == "a"
    assert "traceloop" not in event["metadata"]
    differ = {"honeyhive.session_id": "a", "traceloop.association.properties.session_id": "b"}
    event = map_span(_span(differ), None, {}, "otel")[0]
    assert event["metadata"]["traceloop"]["association"]["properties"]["session_id"] == "b"
