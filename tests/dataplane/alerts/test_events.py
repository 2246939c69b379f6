"""The alert activity stream (the contract with the federation controller): the model, its
subject and ids, and a publish that is durable and stored once per event id."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from _alerts import activities, fresh
from nats.aio.client import Client
from pydantic import ValidationError

from apiary.dataplane.alerts.events import (
    AlertActivity,
    activity_subject,
    delivery_event_id,
    parse_activity,
    publish_activity,
    transition_event_id,
)
from apiary.queue import ALERT_ACTIVITY_CONSUMER, ALERT_ACTIVITY_STREAM
from apiary.settings import ApiarySettings


def _transition(**extra: object) -> AlertActivity:
    fields: dict[str, object] = {
        "event_id": transition_event_id("a1", 1_700_000_040, "warning"),
        "kind": "transition", "org_id": "o1", "project_id": "p1", "alert_id": "a1",
        "stage": "warning", "state": "triggered", "value": 0.6, "threshold": 0.5,
        "window_end": 1_700_000_040, "at": datetime(2026, 1, 1, tzinfo=UTC), **extra}
    return AlertActivity.model_validate(fields)


def test_ids_subject_and_shape() -> None:
    assert transition_event_id("a1", 60, "critical") == "transition.a1.60.critical"
    assert delivery_event_id("d1", "dead_lettered") == "delivery.d1.dead_lettered"
    assert activity_subject("o1", "p1") == "alert-activity.o1.p1"
    naive = _transition(at=datetime(2026, 1, 1, 12, 0))
    assert naive.at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_activity(naive.model_dump_json().encode()) == naive
    with pytest.raises(ValidationError):
        _transition(detail="x" * 1001)
    with pytest.raises(ValidationError):
        _transition(surprise=True)
    with pytest.raises(ValidationError):
        _transition(kind="firing")


async def test_publish_is_durable_and_stored_once_per_event_id(
        tmp_path: Path, nc: Client) -> None:
    await fresh(nc, ApiarySettings(data_dir=tmp_path))
    js = nc.jetstream()
    activity = _transition()
    await publish_activity(js, activity)
    await publish_activity(js, activity)  # a repeat (a restarted evaluator)
    await publish_activity(js, _transition(
        event_id=transition_event_id("a1", 1_700_000_100, "resolution"), stage="resolution",
        state="resolved", window_end=1_700_000_100))
    assert [a.event_id for a in await activities(nc)] == [
        "transition.a1.1700000040.warning", "transition.a1.1700000100.resolution"]
    info = await js.consumer_info(ALERT_ACTIVITY_STREAM, ALERT_ACTIVITY_CONSUMER)
    assert info.num_pending == 2  # waiting for the federation controller
