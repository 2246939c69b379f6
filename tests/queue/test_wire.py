from __future__ import annotations

import pytest

from apiary.errors import PoisonMessage
from apiary.event import new_event
from apiary.queue import TableBatch, decode_table, encode_table
from apiary.store import arrow_to_events, events_to_arrow

TENANT = {"org_id": "o", "workspace_id": "w", "project_id": "p"}


def test_arrow_batches_round_trip_with_their_envelope() -> None:
    events = [
        new_event(event_id="e1", session_id="s", event_type="model", start_time=1.5e12,
                  end_time=1.5e12 + 12.25, duration=12.25, inputs={"q": [1, {"a": None}]},
                  config={"model": "gpt-4o"}, metadata={"prompt_tokens": 3}, parent_id="s",
                  trace_id="ab" * 16, span_id="cd" * 8, error="boom"),
        new_event(event_id="e2", session_id="", children_ids=["x"]),
    ]
    table = events_to_arrow(TENANT, 42, events)  # type: ignore[arg-type]
    decoded = decode_table(encode_table(TableBatch("spans", TENANT, 42, table,  # type: ignore[arg-type]
                                                   frozenset({"s"}))))
    assert decoded.kind == "spans"
    assert decoded.tenant == TENANT
    assert decoded.version == 42
    assert decoded.inherited_sessions == frozenset({"s"})
    assert decoded.table.schema.metadata is None
    assert decoded.table.equals(table)
    back = arrow_to_events(decoded.table)
    assert back == events


@pytest.mark.parametrize("data", [b"not arrow", b""])
def test_garbage_is_a_poison_message(data: bytes) -> None:
    with pytest.raises(PoisonMessage):
        decode_table(data)


def test_arrow_without_envelope_is_a_poison_message() -> None:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    sink = pa.BufferOutputStream()
    table = pa.table({"x": [1]})
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    with pytest.raises(PoisonMessage, match="envelope"):
        decode_table(sink.getvalue().to_pybytes())
