"""The store's remote methods are declared once (``@remote`` on EventStore): the client's
typed methods are generated from that declaration and the owner refuses anything else."""

from __future__ import annotations

import inspect

import pytest

from apiary.store import (
    REMOTE_METHODS,
    DirectStoreClient,
    EventStore,
    StoreClient,
    call_remote,
)
from apiary.store._codegen import TARGET, render


def test_the_generated_client_methods_are_current() -> None:
    assert TARGET.read_text() == render(), (
        "EventStore's @remote methods changed: run `python -m apiary.store._codegen`")


def test_the_client_has_an_async_method_per_remote_method_and_no_other() -> None:
    public = {name for name, value in inspect.getmembers(StoreClient, inspect.iscoroutinefunction)
              if not name.startswith("_")}
    assert public == set(REMOTE_METHODS)
    assert {"insert_arrow", "insert_arrow_ipc", "query_rows", "export", "chart_data",
            "latest_events_in_sessions", "recently_patched"} <= REMOTE_METHODS
    for name in REMOTE_METHODS:
        store_params = list(inspect.signature(getattr(EventStore, name)).parameters.values())
        client_params = list(inspect.signature(getattr(StoreClient, name)).parameters.values())
        assert [(p.name, p.kind, p.default) for p in client_params] == [
            (p.name, p.kind, p.default) for p in store_params], name


@pytest.mark.parametrize("method", ["close", "migrate", "_rows", "driver", "no_such_method"])
def test_the_owner_refuses_what_is_not_remote(store: EventStore, method: str) -> None:
    with pytest.raises(AttributeError, match="no remote method"):
        call_remote(store, method, (), {})


async def test_a_direct_client_reaches_remote_methods_only(
    store: EventStore, project: str
) -> None:
    client = DirectStoreClient(store)
    assert await client.count_rows(project) == 0
    assert await client.query_rows("SELECT 1 AS n") == [{"n": 1}]
    with pytest.raises(AttributeError, match="no remote method"):
        await client._call("close")
