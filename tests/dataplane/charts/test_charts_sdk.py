"""The unmodified HoneyHive SDK's chart client against a served data plane (real HTTP).

The SDK's project-key calls (``client.charts.*`` without ``project_id``) create, list,
read, update and delete a chart; each answer passes the SDK's own response models. Its
``project_id=`` calls need a ``hh_fgdp_`` data-plane key, a shape Apiary does not issue,
so those paths are covered over plain HTTP in ``test_charts.py``.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator

import httpx
import pytest
from _served_planes import served_data_plane
from honeyhive import HoneyHive
from honeyhive._generated.models import CreateChartRequest, UpdateChartRequest

from apiary.credentials import mint_api_key
from apiary.dataplane.auth import ApiKeyAuthenticator, Permission, Principal, StoredKey
from apiary.event import new_event
from apiary.queue import NatsServer
from apiary.settings import ApiarySettings
from apiary.store import EventStore

T0 = 1_709_251_200_000  # 2024-03-01T00:00:00Z


@pytest.fixture(scope="module")
def plane(nats_server: NatsServer, store: EventStore,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """(URL, API key, project) of a served data plane."""
    key = mint_api_key()
    project = f"proj-sdk-charts-{uuid.uuid4().hex[:8]}"
    principal = Principal(subject=f"key:{key.key_id}", org_id="org-1", workspace_id="ws-1",
                          project_id=project, permissions=frozenset(
                              {Permission.EVENTS_READ, Permission.EVENTS_WRITE}))
    stored = [StoredKey(key.key_id, key.secret_hash, principal)]
    config = ApiarySettings(data_dir=tmp_path_factory.mktemp("sdk-charts"))
    with served_data_plane(nats_server.url, store, config,
                           lambda _: ApiKeyAuthenticator(stored)) as url:
        yield url, key.value, project


def test_the_sdk_chart_client_round_trips(plane: tuple[str, str, str],
                                          store: EventStore) -> None:
    url, key, project = plane
    store.insert_events({"org_id": "org-1", "workspace_id": "ws-1", "project_id": project},
                        1, [new_event(event_id=f"e{i}", session_id="s", event_type="model",
                                      start_time=T0 + i * 1000, end_time=T0 + i * 1000 + d,
                                      duration=float(d), config={"model": "gpt-4o"})
                            for i, d in enumerate((100, 300, 200))])
    client = HoneyHive(api_key=key, server_url=url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # calls without project_id
        created = client.charts.create(CreateChartRequest(
            name="latency", metric="duration", func="max", groupBy="model", bucketing="all",
            dateRange={"$gte": T0, "$lte": T0 + 60_000}))
        chart_id = created.data.id
        assert created.success is True
        assert created.data.dateRange == {"$gte": T0, "$lte": T0 + 60_000}
        assert [c.id for c in client.charts.list().data] == [chart_id]
        updated = client.charts.update(chart_id, UpdateChartRequest(func="avg"))
        assert (updated.data.func, updated.data.groupBy) == ("avg", "model")
        assert client.charts.get(chart_id).data.name == "latency"

        data = httpx.get(f"{url}/v1/charts/{chart_id}/data",
                         headers={"authorization": f"Bearer {key}"}).json()["data"]
        assert data["series"] == [{"group": "gpt-4o", "values": [200.0], "counts": [3]}]

        deleted = client.charts.delete(chart_id)
        assert deleted.success is True
        assert client.charts.list().data == []
