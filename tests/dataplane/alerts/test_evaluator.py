"""The alert evaluator end to end on real components: rules and channels in the federation
buckets as the push writes them, events in real chDB, the evaluator publishing to real
JetStream, a real notifier delivering to local webhook receivers that check signatures.

Most tests drive evaluations at chosen times (``evaluate_all(now=...)``) over events stored
at those times; one runs the loop on the wall clock with a 5 s interval."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _alerts import (
    activities,
    error_events,
    fresh,
    put_rule,
    received,
    serve,
    until,
    webhook,
)
from _notification_receivers import Receiver, Receivers
from nats.aio.client import Client

from apiary.dataplane.alerts.evaluator import AlertEvaluator, window_end_at
from apiary.dataplane.alerts.notice import AlertNotice
from apiary.dataplane.alerts.state import StateStore
from apiary.dataplane.notifications.alerting import notify_with
from apiary.dataplane.notifications.service import NotifierService
from apiary.errors import QueueError
from apiary.event import Event
from apiary.queue import NOTIFICATIONS_STREAM, NOTIFIERS_CONSUMER
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

ORG, WS = "org1", "ws1"


def _settings(tmp_path: Path, **extra: Any) -> ApiarySettings:
    return ApiarySettings(data_dir=tmp_path, outbound_allowlist=("127.0.0.1",),
                          notify_timeout_s=2.0, notify_retry_base_s=0.05,
                          notify_retry_max_s=0.2, **extra)


def _pid(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def _one_project(tmp_path: Path, nc: Client, hub: Receivers, channel: str,
                       org_scope: bool = False) -> tuple[ApiarySettings, str, Receiver]:
    """Fresh buckets, one project served, a webhook channel scoped to it (or to its org)."""
    settings = _settings(tmp_path)
    await fresh(nc, settings)
    project = _pid()
    await serve(nc, {project: (ORG, WS)})
    scope = {"type": "org", "id": ORG} if org_scope else {"type": "project", "id": project}
    return settings, project, await webhook(nc, settings, hub, channel, ORG, scope)


def _grid(offset_windows: int = 200) -> int:
    """A window end on the minute grid, well in the past (the tests place their events)."""
    return window_end_at(time.time(), 60) - offset_windows * 60


async def _evaluator(settings: ApiarySettings, nc: Client, store: EventStore,
                     notify: Any = None) -> AlertEvaluator:
    js = nc.jetstream()
    return AlertEvaluator(settings, js, DirectStoreClient(store), await StateStore.open(js),
                          notify or notify_with(js))


@contextlib.asynccontextmanager
async def _notifier(settings: ApiarySettings, url: str) -> AsyncIterator[NotifierService]:
    service = NotifierService(settings, url, "alerts-notifier-test")
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def _store(store: EventStore, project: str, events: list[Event]) -> None:
    store.insert_events({"org_id": ORG, "workspace_id": WS, "project_id": project}, 1, events)


async def _settled(nc: Client) -> bool:
    info = await nc.jetstream().consumer_info(NOTIFICATIONS_STREAM, NOTIFIERS_CONSUMER)
    return not info.num_pending and not info.num_ack_pending


async def test_error_spans_warn_then_escalate_then_resolve_once_per_channel(
        tmp_path: Path, nc: Client, nats_server: Any, store: EventStore,
        hub: Receivers) -> None:
    settings = _settings(tmp_path)
    await fresh(nc, settings)
    project, elsewhere = _pid(), _pid()
    await serve(nc, {project: (ORG, WS), elsewhere: (ORG, WS)})
    by_project = await webhook(nc, settings, hub, "by-project", ORG,
                               {"type": "project", "id": project})
    by_org = await webhook(nc, settings, hub, "by-org", ORG, {"type": "org", "id": ORG})
    other = await webhook(nc, settings, hub, "other-project", ORG,
                          {"type": "project", "id": elsewhere})
    await put_rule(nc, project, "errors")
    evaluator = await _evaluator(settings, nc, store)
    t = _grid()
    async with _notifier(settings, nats_server.url):
        _store(store, project, error_events(t - 50, errors=6, ok=4))
        await evaluator.evaluate_all(now=t + 1)            # 60 %: warning
        _store(store, project, error_events(t + 10, errors=20, ok=0))
        await evaluator.evaluate_all(now=t + 61)           # 100 %: critical
        await evaluator.evaluate_all(now=t + 62)           # the same window: nothing
        _store(store, project, error_events(t + 70, errors=0, ok=50))
        await evaluator.evaluate_all(now=t + 121)          # 0 %: resolution
        await evaluator.evaluate_all(now=t + 181)          # no events: no value, nothing
        await until(lambda: len(received(by_project)) == 3 and len(received(by_org)) == 3,
                    30, "three notifications on each subscribed channel")
        await until(lambda: _settled(nc), 30, "the notifications acknowledged")

    for receiver in (by_project, by_org):
        assert sorted(received(receiver)) == ["critical", "resolution", "warning"]
        assert len({r.delivery for r in receiver.accepted()}) == 3
    assert received(other) == []
    assert evaluator.stats.transitions == 3
    assert evaluator.stats.failed == 0
    assert evaluator.stats.no_data == 1
    reported = [a for a in await activities(nc) if a.alert_id == "errors"]
    assert [(a.kind, a.stage, a.state, a.window_end) for a in reported] == [
        ("transition", "warning", "triggered", t),
        ("transition", "critical", "triggered", t + 60),
        ("transition", "resolution", "resolved", t + 120)]
    assert [a.event_id for a in reported] == [f"transition.errors.{t}.warning",
                                              f"transition.errors.{t + 60}.critical",
                                              f"transition.errors.{t + 120}.resolution"]
    assert reported[0].value == pytest.approx(0.6)
    assert reported[0].threshold == 0.5
    assert all(a.org_id == ORG and a.project_id == project and not a.muted for a in reported)


async def test_the_loop_fires_within_two_intervals_on_the_wall_clock(
        tmp_path: Path, nc: Client, nats_server: Any, store: EventStore,
        hub: Receivers) -> None:
    interval = 5
    settings = _settings(tmp_path, alert_interval_s=interval)
    await fresh(nc, settings)
    project = _pid()
    await serve(nc, {project: (ORG, WS)})
    channel = await webhook(nc, settings, hub, "loop", ORG, {"type": "project", "id": project})
    await put_rule(nc, project, "loop-errors")
    evaluator = await _evaluator(settings, nc, store)
    within = 2 * interval + 5  # two intervals, and the delivery
    async with _notifier(settings, nats_server.url):
        loop = asyncio.create_task(evaluator.run())
        try:
            _store(store, project, error_events(time.time() - 30, errors=6, ok=4, spread_s=5))
            await until(lambda: received(channel) == ["warning"], within, "the warning")
            _store(store, project, error_events(time.time() - 30, errors=60, ok=0,
                                                spread_s=5))
            await until(lambda: sorted(received(channel)) == ["critical", "warning"], within,
                        "the critical")
            _store(store, project, error_events(time.time() - 30, errors=0, ok=600,
                                                spread_s=5))
            await until(lambda: len(received(channel)) == 3, within, "the resolution")
            cycles = evaluator.stats.cycles
            await until(lambda: evaluator.stats.cycles >= cycles + 2, 3 * interval,
                        "two more evaluations")
            await until(lambda: _settled(nc), 30, "the notifications acknowledged")
        finally:
            evaluator.stop()
            await loop
    assert sorted(received(channel)) == ["critical", "resolution", "warning"]
    assert evaluator.stats.failed == 0


async def test_muted_records_state_and_sends_nothing_paused_is_not_evaluated(
        tmp_path: Path, nc: Client, nats_server: Any, store: EventStore,
        hub: Receivers) -> None:
    settings, project, channel = await _one_project(tmp_path, nc, hub, "muted", org_scope=True)
    await put_rule(nc, project, "muted", muted=True)
    await put_rule(nc, project, "paused", paused=True)
    evaluator = await _evaluator(settings, nc, store)
    states = await StateStore.open(nc.jetstream())
    t = _grid()
    async with _notifier(settings, nats_server.url):
        _store(store, project, error_events(t - 50, errors=10, ok=0))
        await evaluator.evaluate_all(now=t + 1)
        # The control: the same rule unmuted notifies (the channel works).
        await put_rule(nc, project, "muted", version=2, muted=False)
        _store(store, project, error_events(t + 10, errors=0, ok=10))
        await evaluator.evaluate_all(now=t + 61)
        await until(lambda: received(channel) == ["resolution"], 30, "the unmuted resolution")
        await until(lambda: _settled(nc), 30, "the notifications acknowledged")

    muted = [a for a in await activities(nc) if a.alert_id == "muted"]
    assert [(a.stage, a.muted) for a in muted] == [("critical", True), ("resolution", False)]
    assert (await states.load(project, "muted")).state.last_window_end == t + 60
    assert (await states.load(project, "paused")).revision == 0  # never evaluated
    assert not [a for a in await activities(nc) if a.alert_id == "paused"]
    assert evaluator.stats.skipped_paused == 2
    assert received(channel) == ["resolution"]  # settled: the muted critical never came


async def test_drift_fires_on_a_latency_step_and_not_on_noise(
        tmp_path: Path, nc: Client, nats_server: Any, store: EventStore,
        hub: Receivers) -> None:
    settings, project, channel = await _one_project(tmp_path, nc, hub, "drift")
    await put_rule(nc, project, "latency", type="drift", field="latency_p95", direction="up",
                   comparison_window_s=60, warning={"op": ">=", "value": 0.5},
                   critical={"op": ">=", "value": 1.0}, name="p95 latency step")
    evaluator = await _evaluator(settings, nc, store)
    rng = random.Random(7)
    t = _grid(300)
    async with _notifier(settings, nats_server.url):
        for w in range(8):  # noise: 100 ms +- 15 % in every window
            start = t - 60 + w * 60
            events = error_events(start + 1, errors=0, ok=40, spread_s=50)
            for e in events:
                e["duration"] = 100.0 * rng.uniform(0.85, 1.15)
            _store(store, project, events)
            if w:
                await evaluator.evaluate_all(now=start + 61)
        assert evaluator.stats.transitions == 0
        assert evaluator.stats.evaluated == 7
        step = t + 7 * 60  # the step: 300 ms
        events = error_events(step + 1, errors=0, ok=40, spread_s=50, duration_ms=300.0)
        _store(store, project, events)
        await evaluator.evaluate_all(now=step + 61)
        await until(lambda: received(channel) == ["critical"], 30, "the drift's critical")
        await until(lambda: _settled(nc), 30, "the notifications acknowledged")
    [fired] = [a for a in await activities(nc) if a.alert_id == "latency"]
    assert fired.stage == "critical"
    assert fired.value is not None
    assert fired.value >= 1.0


async def test_min_duration_keeps_a_wobbling_rate_from_flapping(
        tmp_path: Path, nc: Client, nats_server: Any, store: EventStore,
        hub: Receivers) -> None:
    settings, project, channel = await _one_project(tmp_path, nc, hub, "wobble")
    await put_rule(nc, project, "wobble", critical=None, min_duration_s=120)
    evaluator = await _evaluator(settings, nc, store)
    t = _grid(400)
    rates = [6, 4, 6, 4, 6, 4, 6, 6, 6]  # errors out of 10 per window
    async with _notifier(settings, nats_server.url):
        for w, errors in enumerate(rates):
            _store(store, project, error_events(t + w * 60 + 5, errors=errors, ok=10 - errors))
            await evaluator.evaluate_all(now=t + (w + 1) * 60 + 1)
        await until(lambda: received(channel) == ["warning"], 30, "the one warning")
        await until(lambda: _settled(nc), 30, "the notifications acknowledged")
    [fired] = [a for a in await activities(nc) if a.alert_id == "wobble"]
    assert fired.window_end == t + 9 * 60  # past 0.5 at 3 evaluations in a row: 120 s


async def test_a_restart_neither_repeats_nor_forgets_a_transition(
        tmp_path: Path, nc: Client, nats_server: Any, store: EventStore,
        hub: Receivers) -> None:
    """Killed before sending (NATS refused the publish): the transition waits in the
    outbox and the next evaluator sends it, with its original window. Killed after sending
    and before clearing the outbox: the next one sends it again under the same ids, and
    the channel receives it once."""
    settings, project, channel = await _one_project(tmp_path, nc, hub, "restart")
    await put_rule(nc, project, "restart")
    js = nc.jetstream()
    states = await StateStore.open(js)

    async def refused(notice: AlertNotice) -> None:
        raise QueueError("JetStream did not acknowledge the notification in time")

    t = _grid(500)
    async with _notifier(settings, nats_server.url):
        _store(store, project, error_events(t - 50, errors=6, ok=4))
        first = await _evaluator(settings, nc, store, notify=refused)
        await first.evaluate_all(now=t + 1)
        assert first.stats.failed == 1
        assert first.stats.transitions == 0
        kept = await states.load(project, "restart")
        assert [x.stage for x in kept.outbox] == ["warning"]
        assert kept.state.stage == "warning"

        second = await _evaluator(settings, nc, store)
        await second.evaluate_all(now=t + 61)  # a later window: the outbox's is sent
        await until(lambda: received(channel) == ["warning"], 30, "the warning")
        after = await states.load(project, "restart")
        assert after.outbox == ()
        assert after.state.last_window_end == t + 60

        # Died after sending, before clearing: the outbox is back as it was written.
        await states.save(project, "restart", kept.state, kept.outbox, after.revision)
        third = await _evaluator(settings, nc, store)
        await third.evaluate_all(now=t + 62)
        assert third.stats.transitions == 1  # published again (stored once)...
        await until(lambda: _settled(nc), 30, "the notifications acknowledged")
    assert received(channel) == ["warning"]  # ... and delivered once
    reported = [a for a in await activities(nc) if a.alert_id == "restart"]
    assert [(a.stage, a.window_end) for a in reported] == [("warning", t)]
