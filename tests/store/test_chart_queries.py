"""Chart queries on the store: every metric, bucket and dimension checked against numbers
computed here in Python from the inserted events; exactness under versions; which table
answers; validation of chart requests."""

from __future__ import annotations

import math
import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from factory import tenant

from apiary.errors import InvalidRequest
from apiary.event import Event, new_event
from apiary.store import EmbeddedClickHouse, EventStore
from apiary.store._chart_spec import MAX_BUCKETS, parse_chart_request

T0 = 1_709_251_200_000  # 2024-03-01T00:00:00Z
HOUR = 3_600_000
RANGE = {"$gte": T0, "$lte": T0 + 3 * HOUR - 1}
MODELS = (("gpt-4o", "openai"), ("claude-3-5", "anthropic"), ("llama-3", "meta"))


def _dataset(seed: int = 11) -> list[Event]:
    """12 sessions over 3 hours: a session event, a chain, model calls (cost, tokens,
    model, user), tools (some failing), some chains scored in ``metrics``."""
    rng = random.Random(seed)
    events: list[Event] = []
    for s in range(12):
        sid = str(uuid.UUID(int=rng.getrandbits(128)))
        start = T0 + s * 15 * 60_000 + rng.randint(0, 60_000)
        user = f"user-{s % 4}"
        events.append(new_event(event_id=sid, session_id=sid, event_type="session",
                                event_name="chat", source="prod" if s % 3 else "staging",
                                start_time=start, end_time=start + 9_000,
                                metadata={"user_id": user}))
        chain = str(uuid.UUID(int=rng.getrandbits(128)))
        score: dict[str, Any] = {"accuracy": round(rng.random(), 3)} if s % 2 else {}
        events.append(new_event(event_id=chain, session_id=sid, parent_id=sid,
                                event_type="chain", event_name="answer", source="prod",
                                start_time=start + 1, end_time=start + 8_000,
                                duration=7_999.0, metadata={"user_id": user},
                                metrics=score))
        for i in range(rng.randint(2, 5)):
            t = start + 10 + i * 1_000
            eid = str(uuid.UUID(int=rng.getrandbits(128)))
            if i % 2 == 0:
                model, provider = MODELS[rng.randrange(3)]
                prompt, completion = rng.randint(10, 900), rng.randint(1, 300)
                duration = float(rng.randint(50, 4_000))
                events.append(new_event(
                    event_id=eid, session_id=sid, parent_id=chain, event_type="model",
                    event_name="llm", source="prod", start_time=t, end_time=t + duration,
                    duration=duration, config={"model": model, "provider": provider},
                    metadata={"user_id": user, "prompt_tokens": prompt,
                              "completion_tokens": completion,
                              "total_tokens": prompt + completion,
                              "cost": round(prompt * 1e-6 + completion * 3e-6, 9),
                              "latency_budget": str(rng.randint(1, 9))},
                    error="rate limited" if rng.random() < 0.2 else None))
            else:
                duration = float(rng.randint(5, 500))
                events.append(new_event(
                    event_id=eid, session_id=sid, parent_id=chain, event_type="tool",
                    event_name="search", source="prod", start_time=t, end_time=t + duration,
                    duration=duration, metadata={"user_id": user},
                    error="timeout" if rng.random() < 0.3 else None))
    return events


@pytest.fixture(params=["final", "register"])
def store(request: pytest.FixtureRequest, driver: EmbeddedClickHouse) -> Iterator[EventStore]:
    """The session's database read two ways: collapsing versions with FINAL, and without
    it through the register of keys stored twice (which sees every insert of the test)."""
    store = EventStore(driver)
    store.migrate()
    if request.param == "register":
        store.track_duplicates(background=False)
    yield store
    if request.param == "register":
        # Every chart of the test was answered without FINAL.
        assert store.chart_reads["final"] == 0


@pytest.fixture
def loaded(store: EventStore, project: str) -> tuple[EventStore, str, list[Event]]:
    events = _dataset()
    store.insert_events(tenant(project), 1, events)
    return store, project, events


def _bucket(event: Event, step: int = HOUR) -> int:
    return int(event["start_time"]) // step * step


def _in_range(event: Event) -> bool:
    return RANGE["$gte"] <= event["start_time"] <= RANGE["$lte"]


def _cost(event: Event) -> float:
    return float(event["metadata"].get("cost", 0.0))


def _series(answer: dict[str, Any], group: str | None = None) -> dict[str, Any]:
    (series,) = [s for s in answer["series"] if s["group"] == group]
    return series


def _close(got: list[float | None], want: list[float | None]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g is None
        else:
            assert g is not None
            assert math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-12), (got, want)


def test_event_counts_error_rate_and_buckets(loaded: tuple[EventStore, str, list[Event]]
                                             ) -> None:
    store, project, events = loaded
    answer = store.chart_data(project, {"metric": "event_count", "bucketing": "hour",
                                        "dateRange": RANGE})
    assert answer["buckets"] == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert answer["source"] == "events"
    assert answer["exact"] is True
    want = [sum(1 for e in events if _in_range(e) and _bucket(e) == b)
            for b in answer["buckets"]]
    assert _series(answer)["values"] == [float(n) for n in want]
    assert _series(answer)["counts"] == want
    assert sum(want) == len(events)

    rate = store.chart_data(project, {"metric": "Error Rate", "bucketing": "all",
                                      "dateRange": RANGE})
    errors = sum(1 for e in events if e["error"])
    assert 0 < errors < len(events)
    _close(_series(rate)["values"], [errors / len(events)])
    assert rate["buckets"] == [T0]
    count = store.chart_data(project, {"metric": "errors", "bucketing": "hour",
                                       "dateRange": RANGE, "groupBy": "event_type"})
    for series in count["series"]:
        assert series["values"] == [
            float(sum(1 for e in events if e["error"] and e["event_type"] == series["group"]
                      and _bucket(e) == b)) for b in count["buckets"]]
    assert {s["group"] for s in count["series"]} == {"session", "chain", "model", "tool"}


@pytest.mark.parametrize("func", ["p50", "p90", "p95", "p99", "avg", "min", "max", "median"])
def test_latency_aggregates_per_model(loaded: tuple[EventStore, str, list[Event]],
                                      func: str) -> None:
    store, project, events = loaded
    answer = store.chart_data(project, {"metric": "latency", "func": func,
                                        "bucketing": "hour", "dateRange": RANGE,
                                        "groupBy": "model"})
    assert answer["metric"] == "duration"
    compute = {"avg": np.mean, "min": np.min, "max": np.max, "median": np.median}.get(
        func, lambda xs: np.percentile(xs, float(func[1:])))
    by_group: dict[str | None, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for e in events:
        model = e["config"].get("model") or None
        if e["duration"]:
            by_group[model][_bucket(e)].append(e["duration"])
    assert {s["group"] for s in answer["series"]} == set(by_group)
    for series in answer["series"]:
        cells = by_group[series["group"]]
        _close(series["values"], [float(compute(cells[b])) if cells.get(b) else None
                                  for b in answer["buckets"]])
        assert series["counts"] == [len(cells.get(b, [])) for b in answer["buckets"]]


def test_cost_tokens_and_json_metrics(loaded: tuple[EventStore, str, list[Event]]) -> None:
    store, project, events = loaded
    cost = store.chart_data(project, {"metric": "cost", "bucketing": "day",
                                      "dateRange": RANGE, "groupBy": "provider"})
    assert cost["func"] == "sum"
    for series in cost["series"]:
        want = sum(_cost(e) for e in events if (e["config"].get("provider") or None)
                   == series["group"])
        _close(series["values"], [want] if series["group"] else [0.0])
    tokens = store.chart_data(project, {"metric": "tokens", "func": "sum",
                                        "bucketing": "hour", "dateRange": RANGE})
    _close(_series(tokens)["values"], [
        float(sum(e["metadata"].get("total_tokens", 0) for e in events if _bucket(e) == b))
        for b in tokens["buckets"]])
    prompt = store.chart_data(project, {"metric": "prompt_tokens", "func": "avg",
                                        "bucketing": "all", "dateRange": RANGE})
    _close(_series(prompt)["values"], [float(np.mean(
        [e["metadata"]["prompt_tokens"] for e in events if "prompt_tokens" in e["metadata"]]))])

    scored = [e for e in events if "accuracy" in e["metrics"]]
    accuracy = store.chart_data(project, {"metric": "metrics.accuracy", "func": "p90",
                                          "bucketing": "all", "dateRange": RANGE})
    _close(_series(accuracy)["values"],
           [float(np.percentile([e["metrics"]["accuracy"] for e in scored], 90))])
    assert _series(accuracy)["counts"] == [len(scored)]
    # A numeric string in metadata is a number; events without the key are skipped.
    budget = store.chart_data(project, {"metric": "metadata.latency_budget", "func": "sum",
                                        "bucketing": "all", "dateRange": RANGE,
                                        "groupBy": "metadata.user_id", "max_groups": 2})
    per_user: dict[str, float] = defaultdict(float)
    counted: dict[str, int] = defaultdict(int)
    for e in events:
        if "latency_budget" in e["metadata"]:
            per_user[e["metadata"]["user_id"]] += float(e["metadata"]["latency_budget"])
        counted[e["metadata"]["user_id"]] += 1
    top = sorted(counted, key=lambda u: (-counted[u], u))[:2]
    assert [s["group"] for s in budget["series"]] == top
    assert budget["truncated"] is True
    for series in budget["series"]:
        _close(series["values"], [per_user[series["group"]]])


def test_filters_and_sessions(loaded: tuple[EventStore, str, list[Event]]) -> None:
    store, project, events = loaded
    filters = [{"field": "event_type", "operator": "is", "value": "model", "type": "string"},
               {"field": "metadata.user_id", "operator": "is", "value": "user-1"}]
    answer = store.chart_data(project, {"metric": "duration", "func": "max",
                                        "bucketing": "all", "dateRange": RANGE,
                                        "query": filters})
    chosen = [e["duration"] for e in events
              if e["event_type"] == "model" and e["metadata"]["user_id"] == "user-1"]
    _close(_series(answer)["values"], [max(chosen)])

    sessions = store.chart_data(project, {"metric": "session_count", "bucketing": "hour",
                                          "dateRange": RANGE})
    assert sessions["source"] == "session_aggregates"
    firsts: dict[str, float] = {}
    for e in events:
        firsts[e["session_id"]] = min(firsts.get(e["session_id"], math.inf), e["start_time"])
    assert _series(sessions)["values"] == [
        float(sum(1 for t in firsts.values() if int(t) // HOUR * HOUR == b))
        for b in sessions["buckets"]]
    by_source = store.chart_data(project, {"metric": "session_duration", "func": "max",
                                           "bucketing": "all", "dateRange": RANGE,
                                           "groupBy": "source"})
    lasts: dict[str, float] = defaultdict(float)
    for e in events:
        lasts[e["session_id"]] = max(lasts[e["session_id"]], e["end_time"])
    sources = {e["session_id"]: e["source"] for e in events if e["event_type"] == "session"}
    for series in by_source["series"]:
        _close(series["values"], [max(lasts[s] - firsts[s] for s in sources
                                      if sources[s] == series["group"])])
    # With filters, session_count counts the sessions of the matching events.
    failing = store.chart_data(project, {"metric": "sessions", "bucketing": "all",
                                         "dateRange": RANGE, "query": [
                                             {"field": "error", "operator": "exists"}]})
    assert failing["source"] == "events"
    assert _series(failing)["values"] == [float(len({e["session_id"] for e in events
                                                     if e["error"]}))]


def test_name_rollup_answers_all_time_counts(loaded: tuple[EventStore, str, list[Event]]
                                             ) -> None:
    store, project, events = loaded
    answer = store.chart_data(project, {"metric": "event_count", "bucketing": "all",
                                        "groupBy": "event_name"})
    assert answer["source"] == "project_event_details"
    assert answer["exact"] is False
    assert answer["dateRange"] is None
    names = defaultdict(int)
    for e in events:
        names[e["event_name"]] += 1
    assert {s["group"]: s["values"][0] for s in answer["series"]} == {
        k: float(v) for k, v in names.items()}
    ranked = [s["values"][0] for s in answer["series"]]
    assert ranked == sorted(ranked, reverse=True)


def test_versions_count_once_with_their_newest_values(store: EventStore, project: str
                                                      ) -> None:
    first = new_event(event_id="e1", session_id="s1", event_type="model", start_time=T0,
                      end_time=T0 + 100, duration=100.0,
                      config={"model": "gpt-4o"}, metadata={"cost": 1.0})
    other = new_event(event_id="e2", session_id="s1", event_type="model",
                      start_time=T0 + 5, end_time=T0 + 305, duration=300.0,
                      config={"model": "gpt-4o"}, metadata={"cost": 2.0})
    store.insert_events(tenant(project), 1, [first, other])
    store.insert_events(tenant(project), 2, [{**first, "duration": 700.0,
                                              "metadata": {"cost": 5.0}}])
    request = {"bucketing": "all", "dateRange": RANGE}
    assert _series(store.chart_data(project, {"metric": "event_count", **request})
                   )["values"] == [2.0]
    _close(_series(store.chart_data(project, {"metric": "cost", **request}))["values"],
           [7.0])
    _close(_series(store.chart_data(project, {"metric": "duration", "func": "max",
                                              **request}))["values"], [700.0])
    # Another project sees nothing of it.
    empty = store.chart_data(project + "-other", {"metric": "event_count", **request})
    assert empty["series"] == []


def test_empty_buckets_hold_zero_for_counts_and_null_for_averages(store: EventStore,
                                                                  project: str) -> None:
    store.insert_events(tenant(project), 1, [new_event(
        event_id="only", session_id="s", event_type="tool", start_time=T0 + HOUR + 1,
        end_time=T0 + HOUR + 11, duration=10.0)])
    counts = store.chart_data(project, {"metric": "event_count", "bucketing": "hour",
                                        "dateRange": RANGE})
    assert _series(counts)["values"] == [0.0, 1.0, 0.0]
    latency = store.chart_data(project, {"metric": "duration", "bucketing": "hour",
                                         "dateRange": RANGE})
    assert _series(latency)["values"] == [None, 10.0, None]
    minutes = store.chart_data(project, {"metric": "event_count", "bucketing": "minute",
                                         "dateRange": {"relative": "2h"}},
                               now_ms=T0 + 2 * HOUR)
    assert len(minutes["buckets"]) == 121
    assert minutes["buckets"][0] == T0
    assert sum(_series(minutes)["values"]) == 1.0


@pytest.mark.parametrize(("request_", "field"), [
    ({}, "metric"),
    ({"metric": "bogus"}, "metric"),
    ({"metric": "inputs"}, "metric"),
    ({"metric": "model.x"}, "metric"),
    ({"metric": "event_count", "func": "p95"}, "func"),
    ({"metric": "error_rate", "func": "sum"}, "func"),
    ({"metric": "duration", "func": "p101"}, "func"),
    ({"metric": "duration", "func": 3}, "func"),
    ({"metric": "duration", "bucketing": "fortnight"}, "bucketing"),
    ({"metric": "duration", "groupBy": "user"}, "groupBy"),
    ({"metric": "duration", "groupBy": "duration.x"}, "groupBy"),
    ({"metric": "session_cost", "groupBy": "model"}, "groupBy"),
    ({"metric": "session_cost", "query": [{"field": "source", "operator": "is",
                                           "value": "x"}]}, "query"),
    ({"metric": "duration", "query": [{"field": "nope", "operator": "is", "value": 1}]},
     "nope"),
    ({"metric": "duration", "query": {"field": "x"}}, "query"),
    ({"metric": "duration", "dateRange": {"$gte": T0, "$lte": T0 - 1}}, "dateRange"),
    ({"metric": "duration", "dateRange": {"relative": "7 years"}}, "dateRange"),
    ({"metric": "duration", "dateRange": {"from": T0}}, "dateRange"),
    ({"metric": "duration", "dateRange": {"$gte": "yesterday"}}, "dateRange.$gte"),
    ({"metric": "duration", "dateRange": [T0]}, "dateRange"),
    ({"metric": "duration", "bucketing": "minute", "dateRange": {"relative": "30d"}},
     "dateRange"),
    ({"metric": "duration", "max_groups": 0}, "max_groups"),
])
def test_bad_chart_requests_name_the_field(request_: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_chart_request(request_, now_ms=float(T0))
    assert info.value.status == 400
    assert info.value.context.get("field") == field, info.value


def test_bucket_limit_and_defaults() -> None:
    spec = parse_chart_request({"metric": "duration", "bucketing": "minute"},
                               now_ms=float(T0))
    assert (spec.lte_us or 0) - (spec.gte_us or 0) == HOUR * 1000
    spec = parse_chart_request({"metric": "cost", "bucketing": "all"}, now_ms=float(T0))
    assert (spec.gte_us, spec.lte_us, spec.func) == (None, None, "sum")
    edge = {"$gte": T0, "$lte": T0 + (MAX_BUCKETS - 1) * 60_000}
    assert parse_chart_request({"metric": "cost", "bucketing": "minute", "dateRange": edge})
    with pytest.raises(InvalidRequest):
        parse_chart_request({"metric": "cost", "bucketing": "minute", "dateRange": {
            **edge, "$lte": edge["$lte"] + 60_000}})
