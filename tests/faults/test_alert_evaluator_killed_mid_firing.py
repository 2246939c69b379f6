"""The alert evaluator actor killed (``ray.kill``) in the middle of a firing, on real Ray,
real JetStream, real chDB (its owner actor) and a real webhook receiver: error spans give
one warning, then one critical, then one resolution after the errors stop — each exactly
once on the channel, although the evaluator was killed right after new errors arrived and
again right after the resolution, and Ray restarted it each time."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from _notification_receivers import Receiver, Receivers
from _ray_node import config_bucket, ray_node, wait_restarted
from _waits import until
from nats.js.api import KeyValueConfig, StorageType

from apiary.dataplane.alerts.events import parse_activity
from apiary.dataplane.evaluation.proxy.envelope import envelope_from_settings
from apiary.dataplane.notifications.channels import channel_entry
from apiary.dataplane.notifications.service import NotifierService
from apiary.dataplane.replica.federation_state import PROJECTS_KEY, STATE_BUCKET
from apiary.event import Event, new_event
from apiary.queue import (
    ALERT_ACTIVITY_STREAM,
    NOTIFICATIONS_STREAM,
    NOTIFIERS_CONSUMER,
)
from apiary.settings import ApiarySettings
from apiary.store import CLICKHOUSE_ACTOR_NAME, ActorStoreClient, events_to_arrow

pytestmark = pytest.mark.ray

SECRET = "whsec-0123456789abcdef"
INTERVAL_S = 5
ORG, WS, PROJECT, ALERT = "org1", "ws1", "p-killed", "killed-errors"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiarySettings, str]]:
    """nats-server and local Ray (one per module), the data plane's settings."""
    with ray_node(tmp_path_factory.mktemp("alert-evaluator-ray"), alert_interval_s=INTERVAL_S,
                  notify_timeout_s=2.0, notify_retry_base_s=0.05,
                  notify_retry_max_s=0.2) as started:
        yield started


def _events(errors: int, ok: int) -> list[Event]:
    """Model events 30 s ago (inside the next windows for half a minute)."""
    start = time.time() - 30
    out = []
    for i in range(errors + ok):
        t = (start + 5 * i / (errors + ok)) * 1000.0
        eid = str(uuid.uuid4())
        out.append(new_event(event_id=eid, session_id=eid, event_type="model",
                             event_name="llm", start_time=t, end_time=t + 100.0,
                             duration=100.0, error="boom" if i < errors else None))
    return out


def _stages(receiver: Receiver) -> list[str]:
    return [str(orjson.loads(r.body)["stage"]) for r in receiver.accepted()]


async def test_evaluator_killed_mid_firing_notifies_each_stage_once(
        node: tuple[ApiarySettings, str], hub: Receivers) -> None:
    import ray

    from apiary.actors.alert_evaluator import start_alert_evaluator
    from apiary.actors.clickhouse import ClickHouseActor

    settings, url = node
    nc, config = await config_bucket(url, settings, "alert-evaluator-fault-test")
    js = nc.jetstream()
    federation = await js.create_key_value(KeyValueConfig(bucket=STATE_BUCKET, history=1,
                                                          storage=StorageType.FILE))
    await federation.put(PROJECTS_KEY, orjson.dumps({"projects": {PROJECT: {
        "project_id": PROJECT, "org_id": ORG, "workspace_id": WS, "name": "p"}}}))
    receiver = Receiver(secret=SECRET.encode())
    key, value = channel_entry(
        {"id": "hook", "org_id": ORG, "type": "webhook",
         "scope": {"type": "project", "id": PROJECT},
         "severities": ["warning", "critical", "resolution"],
         "config": {"url": hub.add("alert-fault", receiver), "secret": SECRET}},
        envelope_from_settings(settings))
    await config.put(key, value)
    await config.put(f"alert_rule.{PROJECT}.{ALERT}", orjson.dumps({
        "version": 1, "project_id": PROJECT, "object": {
            "id": ALERT, "project_id": PROJECT, "name": "Error rate", "paused": False,
            "muted": False, "evaluation_state": None, "state_changed_at": None,
            "condition": {"type": "aggregate", "field": "error_rate", "filters": [],
                          "window_s": 60, "warning": {"op": ">=", "value": 0.5},
                          "critical": {"op": ">=", "value": 0.9}, "min_duration_s": 0}}}))

    owner = ClickHouseActor.options(  # type: ignore[attr-defined]
        name=CLICKHOUSE_ACTOR_NAME, namespace="apiary", num_cpus=0).remote(settings)
    store = ActorStoreClient(owner)
    tenant = {"org_id": ORG, "workspace_id": WS, "project_id": PROJECT}

    async def store_events(errors: int, ok: int) -> None:
        await store.insert_arrow(events_to_arrow(tenant, 1, _events(errors, ok)))

    notifier = NotifierService(settings, url, "alert-fault-notifier")
    await notifier.start()
    evaluator: Any = None
    within = 2 * INTERVAL_S + 10  # two intervals, a restart and the delivery

    async def kill_and_restart() -> None:
        ray.kill(evaluator, no_restart=False)  # Ray restarts it

        await wait_restarted(evaluator, "Ray restarted the killed evaluator")
        # As the start-up sequence's ensure_running does every few seconds.
        await asyncio.to_thread(ray.get, evaluator.ensure_running.remote(), timeout=60)

    try:
        evaluator = await asyncio.to_thread(start_alert_evaluator, settings, url)
        await store_events(errors=6, ok=4)
        await until(lambda: _stages(receiver) == ["warning"], within, "the warning")

        await store_events(errors=60, ok=0)
        await kill_and_restart()  # the new errors are evaluated by the restarted one
        await until(lambda: sorted(_stages(receiver)) == ["critical", "warning"], within,
                    "the critical")

        await store_events(errors=0, ok=600)
        await until(lambda: len(_stages(receiver)) == 3, within, "the resolution")
        await kill_and_restart()  # right after a transition: it must not come again
        await until(lambda: asyncio.to_thread(
            lambda: ray.get(evaluator.stats.remote(), timeout=10)["cycles"] >= 2),
            4 * INTERVAL_S, "two evaluations by the restarted evaluator")
        after = await asyncio.to_thread(ray.get, evaluator.stats.remote(), timeout=10)

        async def settled() -> bool:
            info = await js.consumer_info(NOTIFICATIONS_STREAM, NOTIFIERS_CONSUMER)
            return not info.num_pending and not info.num_ack_pending

        await until(settled, 30, "the notifications acknowledged")
        info = await js.stream_info(ALERT_ACTIVITY_STREAM)
        transitions = []
        for seq in range(int(info.state.first_seq or 1), int(info.state.last_seq or 0) + 1):
            with contextlib.suppress(Exception):
                activity = parse_activity((await js.get_msg(ALERT_ACTIVITY_STREAM, seq)).data
                                          or b"")
                if activity.kind == "transition":
                    transitions.append(activity.stage)
    finally:
        with contextlib.suppress(Exception):
            if evaluator is not None:
                await asyncio.to_thread(ray.get, evaluator.stop.remote(), timeout=30)
                ray.kill(evaluator)
        await notifier.stop()
        with contextlib.suppress(Exception):
            ray.kill(owner)
        await nc.close()

    assert sorted(_stages(receiver)) == ["critical", "resolution", "warning"]
    assert len({r.delivery for r in receiver.accepted()}) == 3
    # A transition published again after a kill is stored once (its id is stable).
    assert transitions == ["warning", "critical", "resolution"]
    assert after["failed"] == 0
    assert after["running"]
