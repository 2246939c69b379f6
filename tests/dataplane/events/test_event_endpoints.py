"""Events over HTTP with the HoneyHive SDK's exact bodies: create (single, batch, v1),
read, update, search and the schema. Writes pass through JetStream and the writer."""

from __future__ import annotations

import json
from typing import Any

from _event_api_plane import Api, honeyhive_body, new_id
from honeyhive._generated.models import PostEventBatchResponse


async def test_post_events_with_the_sdk_body(api: Api) -> None:
    body = honeyhive_body("rest_events_create")  # session "s1", extra field "project"
    session_id = f"s1-{new_id()}"
    body["event"]["session_id"] = session_id
    answer = await api.ok("POST", "/events", json=body)
    assert set(answer) == {"success", "event_id"}
    assert answer["success"] is True
    stored = await api.event(answer["event_id"])
    assert stored["event_type"] == "tool"
    assert stored["event_name"] == "t"
    assert stored["inputs"] == {"x": 1}
    assert stored["session_id"] == session_id
    assert stored["parent_id"] == session_id  # HoneyHive: parent defaults to the session
    assert stored["project_id"] == api.projects["a"]
    assert stored["source"] == "unknown"


async def test_post_events_batch_with_the_sdk_body_starts_one_session(api: Api) -> None:
    body = honeyhive_body("rest_events_create_batch")  # is_single_session + session_name
    body["events"].append({"event_type": "model", "inputs": {"p": "hi"},
                           "config": {"model": "gpt-4o-mini"},
                           "metadata": {"prompt_tokens": 10, "completion_tokens": 5}})
    answer = await api.ok("POST", "/events/batch", json=body)
    PostEventBatchResponse(**answer)
    assert answer["success"] is True
    assert len(answer["event_ids"]) == 2
    session_id = answer["session_id"]
    session = await api.event(session_id)
    assert session["event_type"] == "session"
    assert session["event_name"] == "s"
    model = await api.event(answer["event_ids"][1])
    assert model["session_id"] == session_id
    assert model["metadata"]["total_tokens"] == 15  # enriched by the writer like a span
    assert model["metadata"]["cost"] > 0
    chain = await api.event(answer["event_ids"][0])
    assert chain["session_id"] == session_id
    assert chain["inputs"] == {}


async def test_post_events_batch_without_single_session(api: Api) -> None:
    session_id = new_id()
    answer = await api.ok("POST", "/events/batch", json={"events": [
        {"event_type": "tool", "session_id": session_id, "inputs": {"i": 0}},
        {"event_type": "tool", "inputs": {"i": 1}}]})
    assert "session_id" not in answer
    first, second = [await api.event(i) for i in answer["event_ids"]]
    assert first["session_id"] == session_id
    assert second["session_id"] not in ("", session_id)


async def test_v1_events_and_v1_batch(api: Api) -> None:
    event_id = new_id()
    answer = await api.ok("POST", "/v1/events", json={
        "event_type": "model", "event_id": event_id, "event_name": "llm", "inputs": {"q": 1},
        "outputs": {"a": 2}, "error": "boom", "start_time": 1700000000000.0,
        "end_time": 1700000000500.0, "feedback": {"r": 1}, "metrics": {"m": 0.5},
        "user_properties": {"u": "x"}, "project_id": "ignored"})
    assert answer == {"success": True, "event_id": event_id}
    stored = await api.event(event_id)
    assert stored["duration"] == 500.0
    assert (stored["error"], stored["outputs"], stored["feedback"]) == ("boom", {"a": 2},
                                                                          {"r": 1})
    assert stored["metrics"] == {"m": 0.5}
    assert stored["user_properties"] == {"u": "x"}

    batch = await api.ok("POST", "/v1/events/batch", json={
        "events": [{"event_type": "chain", "inputs": {}}, {"event_type": "tool", "inputs": {}}],
        "single_session": True,
        "session_properties": {"session_name": "v1batch", "metadata": {"env": "ci"}}})
    session = await api.event(batch["session_id"])
    assert session["event_name"] == "v1batch"
    assert session["metadata"] == {"env": "ci"}
    for child in batch["event_ids"]:
        stored = await api.event(child)
        assert stored["session_id"] == batch["session_id"]
        assert stored["metadata"]["env"] == "ci"  # inherited from the session


async def test_get_event_answers_the_sdk_model(api: Api) -> None:
    from honeyhive._generated.models import GetEventResponse, PostEventResponse

    answer = await api.ok("POST", "/v1/events", json={"event_type": "tool", "inputs": {}})
    PostEventResponse(**answer)
    await api.event(answer["event_id"])
    body = await api.ok("GET", f"/v1/events/{answer['event_id']}")
    assert GetEventResponse(**body).event.event_id == answer["event_id"]


async def test_put_events_with_every_sdk_body(api: Api) -> None:
    session_id = new_id()
    await api.ok("POST", "/session/start", json={"session": {"session_id": session_id}})
    enrich = honeyhive_body("rest_put_events_enrich_session")
    enrich["event_id"] = session_id
    assert await api.ok("PUT", "/events", json=enrich) == {"success": True,
                                                          "event_id": session_id}
    stored = await api.event(session_id, until=lambda e: e["metrics"] != {})
    for field in ("metadata", "feedback", "metrics", "outputs", "config", "user_properties"):
        assert stored[field] == enrich[field], field

    evaluate = honeyhive_body("rest_put_events_evaluate")
    evaluate["event_id"] = session_id
    await api.ok("PUT", "/events", json=evaluate)
    stored = await api.event(session_id, until=lambda e: "len" in e["outputs"])
    assert stored["outputs"] == {"answer": "cba", "len": 3}  # outputs are replaced
    assert stored["feedback"] == {"rating": 5, "ground_truth": {"answer": "cba"}}  # merged

    event_id = new_id()
    await api.ok("POST", "/v1/events", json={"event_type": "tool", "event_id": event_id,
                                             "inputs": {}, "start_time": 1699999999000.0})
    client = honeyhive_body("rest_put_events_client")  # duration 12.5, end_time 1.7e12
    client["event_id"] = event_id
    await api.ok("PUT", "/events", json=client)
    stored = await api.event(event_id, until=lambda e: e["duration"] == 12.5)
    assert stored["end_time"] == 1700000000000.0
    assert stored["metadata"] == {"k": "v"}

    span_update = honeyhive_body("rest_put_events_enrich_span_event_id")
    span_update["event_id"] = event_id
    await api.ok("PUT", "/events", json=span_update)
    stored = await api.event(event_id, until=lambda e: e["metrics"] == {"m": 1})
    assert stored["metadata"] == {"k": "v", "late": True}


async def test_put_v1_events_by_id_and_empty_updates(api: Api) -> None:
    event_id = new_id()
    await api.ok("POST", "/v1/events", json={"event_type": "chain", "event_id": event_id,
                                             "inputs": {}, "children_ids": ["c0"]})
    await api.event(event_id)
    await api.ok("PUT", f"/v1/events/{event_id}", json={"children_ids": []})  # ignored
    await api.ok("PUT", "/events", json={"event_id": event_id})  # nothing to update: 200
    await api.ok("PUT", f"/v1/events/{event_id}",
                 json={"children_ids": ["c1", "c2"], "config": {"t": 0.2}})
    stored = await api.event(event_id, until=lambda e: e["config"] != {})
    assert stored["children_ids"] == ["c1", "c2"]
    assert stored["config"] == {"t": 0.2}


async def test_search_uses_the_export_filter_language(api: Api) -> None:
    tag = new_id()
    ids = []
    for n, user in enumerate(["ann", "bob", "ann"]):
        answer = await api.ok("POST", "/v1/events", json={
            "event_type": "model", "inputs": {"n": n}, "start_time": 1700000000000.0 + n,
            "metadata": {"tag": tag, "user": {"id": user}, "score": n / 10}})
        ids.append(answer["event_id"])
    for event_id in ids:
        await api.event(event_id)
    tag_filter = {"field": "metadata.tag", "operator": "is", "value": tag, "type": "string"}
    found = await api.search({"filters": [
        tag_filter, {"field": "metadata.user.id", "operator": "is", "value": "ann"}]})
    assert found["totalEvents"] == found["count"] == 2
    assert [e["event_id"] for e in found["events"]] == [ids[0], ids[2]]
    found = await api.search({"filters": [tag_filter, {
        "field": "metadata.score", "operator": "greater than", "value": "0.05",
        "type": "number"}], "limit": 1, "page": 2})
    assert found["totalEvents"] == 2
    assert [e["event_id"] for e in found["events"]] == [ids[2]]
    found = await api.search({"filters": [tag_filter], "dateRange": {
        "start_time": "2023-11-14T22:13:20.001Z", "end_time": 1700000000001.5}})
    assert [e["event_id"] for e in found["events"]] == [ids[1]]
    # An update changes what filters match.
    await api.ok("PUT", "/events", json={"event_id": ids[1], "metadata": {"user": {"id": "ann"}}})
    await api.event(ids[1], until=lambda e: e["metadata"]["user"] == {"id": "ann"})
    found = await api.search({"filters": [
        tag_filter, {"field": "metadata.user.id", "operator": "is", "value": "ann"}]})
    assert found["totalEvents"] == 3


async def test_search_answers_the_sdk_model(api: Api) -> None:
    from honeyhive._generated.models import ExportEventsResponse

    found = await api.search({"filters": [{"field": "event_type", "operator": "is",
                                           "value": "tool"}], "limit": 5})
    model = ExportEventsResponse(**found)
    assert model.count == found["totalEvents"] >= 1


async def _schema(api: Api, who: str = "a", **params: str) -> dict[str, Any]:
    result: dict[str, Any] = await api.ok("GET", "/v1/events/schema", who, params=params)
    return result


async def test_schema_lists_the_fields_in_honeyhive_shape(api: Api) -> None:
    from honeyhive._generated.models import GetEventsSchemaResponse

    run_id = new_id()
    unique = f"field_{run_id[:8]}"
    answer = await api.ok("POST", "/v1/events", json={
        "event_type": "chain", "event_name": "answer", "inputs": {unique: "x"},
        "metadata": {"run_id": run_id, "nested": {"deep": 1}}, "metrics": {"acc": 0.9}})
    await api.event(answer["event_id"])
    await api.settled()  # the event_schemas rollup is written by the same insert
    schema = await _schema(api)
    GetEventsSchemaResponse(**schema)
    assert {"name": f"inputs.{unique}", "event_type": "chain"} in schema["fields"]
    assert {"name": "metadata.nested.deep", "event_type": "chain"} in schema["fields"]
    assert schema["mappings"][f"inputs.{unique}"] == [
        {"field_name": f"inputs.{unique}", "event_type": "chain"}]
    detail = next(d for d in schema["details"] if d["name"] == "metrics.acc")
    assert (detail["value_type"], detail["event_name"]) == ("number", "answer")
    assert detail["occurrences"] >= 1
    assert detail["first_seen"] > 0
    assert any(e["event_name"] == "answer" and e["event_count"] >= 1 for e in schema["events"])

    in_run = await _schema(api, evaluation_id=run_id)
    assert {f["name"] for f in in_run["fields"]} == {
        f"inputs.{unique}", "metadata.run_id", "metadata.nested.deep", "metrics.acc"}
    assert await _schema(api, evaluation_id=new_id()) == {
        "fields": [], "datasets": [], "mappings": {}, "details": [], "events": []}

    future = json.dumps({"$gte": "2999-01-01T00:00:00Z"})
    assert (await _schema(api, dateRange=future))["fields"] == []
    assert {"name": f"inputs.{unique}", "event_type": "chain"} in (
        await _schema(api, dateRange="1d"))["fields"]
