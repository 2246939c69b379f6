"""How writers' tables reach the chDB owner: one Arrow IPC buffer per insert."""

from __future__ import annotations

import uuid

import pyarrow as pa

from apiary.event import Tenant, new_event
from apiary.store import DirectStoreClient, EventStore, arrow_ipc, events_to_arrow


def _request_table(tenant: Tenant, session: str, n: int) -> pa.Table:
    events = [
        new_event(event_id=str(uuid.uuid4()), session_id=session, event_type="model",
                  inputs={"prompt": "é" * (i + 1)}, metadata={"i": i},
                  start_time=1e12 + i, end_time=1e12 + i + 1)
        for i in range(n)
    ]
    return events_to_arrow(tenant, 1, events)


async def test_a_flush_of_many_request_tables_crosses_as_one_buffer_and_every_row_is_stored(
    store: EventStore, project: str
) -> None:
    tenant: Tenant = {"org_id": "o", "workspace_id": "w", "project_id": project}
    # A writer's flush: one table per request message, concatenated (one chunk each).
    flush = pa.concat_tables(
        [_request_table(tenant, str(uuid.uuid4()), 7) for _ in range(12)])
    assert flush.column("event_id").num_chunks == 12

    data = arrow_ipc(flush)
    assert isinstance(data, pa.Buffer)
    assert pa.ipc.open_stream(data).read_all().equals(flush)

    store.insert_arrow_ipc(data)
    client = DirectStoreClient(store)
    assert await client.count_events(project) == 84
    exported = (await client.export(project, {"limit": 100}))["events"]
    assert sorted(e["event_id"] for e in exported) == sorted(
        flush.column("event_id").to_pylist())
    assert {e["inputs"]["prompt"] for e in exported} == {"é" * (i + 1) for i in range(7)}
