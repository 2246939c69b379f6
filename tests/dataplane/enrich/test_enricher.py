from __future__ import annotations

import pytest

from apiary.dataplane.enrich import Enricher, PriceTable, SessionContext, session_id_for_trace
from apiary.event import Event, new_event

TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.bundled()


def test_price_table_knows_common_models_and_tolerates_prefixes_and_dates(
    prices: PriceTable,
) -> None:
    assert len(prices) > 1000
    plain = prices.cost("gpt-4o", "openai", 1000, 500)
    assert plain is not None
    assert plain > 0
    assert prices.cost("openai/gpt-4o-2024-08-06", "", 1000, 500) == pytest.approx(plain)
    assert prices.cost("no-such-model-xyz", "acme", 10, 10) is None


def test_children_take_the_session_and_its_metadata_in_one_batch(prices: PriceTable) -> None:
    enricher = Enricher(prices)
    session = new_event(event_id="s1", session_id="s1", event_type="session", trace_id=TRACE,
                        metadata={"tenant": "acme", "env": "prod"},
                        user_properties={"user_id": "u1"})
    child = new_event(event_id="c1", trace_id=TRACE, metadata={"env": "dev"})
    events: list[Event] = [child, session]  # children usually end (and arrive) first
    needed = enricher.lookups("p", events)
    assert not needed
    enricher.enrich("p", events)
    assert child["session_id"] == "s1"
    assert child["metadata"] == {"tenant": "acme", "env": "dev"}  # own keys win
    assert child["user_properties"] == {"user_id": "u1"}


def test_a_trace_without_a_session_becomes_its_own_session(prices: PriceTable) -> None:
    enricher = Enricher(prices)
    events = [new_event(event_id="a", trace_id=TRACE), new_event(event_id="b", trace_id=TRACE)]
    needed = enricher.lookups("p", events)
    assert needed.traces == {TRACE}
    enricher.learn("p", traces={}, sessions={}, asked=needed)
    enricher.enrich("p", events)
    assert {e["session_id"] for e in events} == {session_id_for_trace(TRACE)}
    assert session_id_for_trace(TRACE) == "0af76519-16cd-43dd-8448-eb211c80319c"


def test_sessions_learnt_from_the_store_are_inherited(prices: PriceTable) -> None:
    enricher = Enricher(prices)
    child = new_event(event_id="c", session_id="s9", trace_id=TRACE)
    needed = enricher.lookups("p", [child])
    assert needed.sessions == {"s9"}
    enricher.learn("p", traces={}, asked=needed,
                   sessions={"s9": SessionContext({"region": "eu"}, {"plan": "pro"})})
    enricher.enrich("p", [child])
    assert child["metadata"] == {"region": "eu"}
    assert child["user_properties"] == {"plan": "pro"}
    # Known now: the next batch of the session asks nothing.
    assert not enricher.lookups("p", [new_event(event_id="d", session_id="s9")])


def test_projects_do_not_share_sessions(prices: PriceTable) -> None:
    enricher = Enricher(prices)
    enricher.lookups("a", [new_event(event_id="x", session_id="s", event_type="session",
                                     metadata={"secret": 1})])
    other = new_event(event_id="y", session_id="s")
    assert enricher.lookups("b", [other]).sessions == {"s"}


def test_computed_fields(prices: PriceTable) -> None:
    enricher = Enricher(prices)
    model = new_event(event_id="m", session_id="s", event_type="model", start_time=1000.0,
                      end_time=1250.5, config={"model": "gpt-4o-mini", "provider": "openai"},
                      metadata={"prompt_tokens": 1000, "completion_tokens": "200"})
    priced = new_event(event_id="n", session_id="s", event_type="model",
                       config={"model": "gpt-4o"},
                       metadata={"prompt_tokens": 5, "completion_tokens": 5, "cost": 9.0,
                                 "total_tokens": 11})
    enricher.lookups("p", [model, priced])
    enricher.enrich("p", [model, priced])
    assert model["duration"] == pytest.approx(250.5)
    assert model["metadata"]["total_tokens"] == 1200
    expected = prices.cost("gpt-4o-mini", "openai", 1000, 200)
    assert model["metadata"]["cost"] == pytest.approx(expected)
    # What the client said is kept.
    assert priced["metadata"]["cost"] == 9.0
    assert priced["metadata"]["total_tokens"] == 11


def test_rows_shipped_by_the_replica_are_finished_by_the_writer(prices: PriceTable) -> None:
    import orjson

    from apiary.store import events_to_arrow

    tenant = {"org_id": "o", "workspace_id": "w", "project_id": "p"}
    replica, writer = Enricher(prices), Enricher(prices)
    # The session event arrived at the replica in an earlier request: it inherited there.
    session = new_event(event_id="s1", session_id="s1", event_type="session",
                        metadata={"tier": "gold"}, user_properties={"plan": "pro"})
    inherited = new_event(event_id="c1", session_id="s1", metadata={"own": 1})
    # Another replica never saw session s2; the writer learns it from the store.
    unknown = new_event(event_id="c2", session_id="s2", metadata={"own": 2})
    # A span of a trace with no session yet: left unlinked by the replica.
    unlinked = new_event(event_id="c3", trace_id=TRACE)
    replica.enrich_request("p", [session])
    resolved = replica.enrich_request("p", [inherited, unknown, unlinked])
    assert resolved == {"s1"}
    assert inherited["metadata"] == {"tier": "gold", "own": 1}
    assert unlinked["session_id"] == ""  # the replica does not invent sessions

    table = events_to_arrow(tenant, 1, [inherited, unknown, unlinked])  # type: ignore[arg-type]
    needed = writer.table_lookups("p", table, frozenset(resolved))
    assert needed.sessions == {"s2"}
    assert needed.traces == {TRACE}
    writer.learn("p", traces={}, asked=needed,
                 sessions={"s2": SessionContext({"region": "eu"}, {})})
    out = writer.enrich_table("p", table, frozenset(resolved))
    metadata = [orjson.loads(m) for m in out.column("metadata").to_pylist()]
    assert metadata[0] == {"tier": "gold", "own": 1}  # untouched: already inherited
    assert metadata[1] == {"region": "eu", "own": 2}
    assert out.column("session_id").to_pylist()[2] == session_id_for_trace(TRACE)
