"""Helpers of the notification tests: a fresh topology and buckets, channels written into
the federation bucket as the federation's applier writes them, a running notifier, waits.

Test modules import these by name (a test module never imports a ``conftest``)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from _waits import until
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError

from apiary.dataplane.evaluation.proxy.envelope import envelope_from_settings
from apiary.dataplane.notifications.channels import CONFIG_BUCKET, channel_entry
from apiary.dataplane.notifications.deliveries import DELIVERIES_BUCKET
from apiary.dataplane.notifications.message import AlertNotification, Stage
from apiary.dataplane.notifications.service import NotifierService
from apiary.queue import NOTIFICATIONS_STREAM, NOTIFIERS_CONSUMER, ensure_topology
from apiary.settings import ApiarySettings

__all__ = ["alert", "consumer_settled", "fresh", "notifier", "put_channel", "until"]


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def fresh(nc: Client, settings: ApiarySettings) -> None:
    """Streams, consumers and buckets as ``settings`` make them, empty."""
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    for bucket in (CONFIG_BUCKET, DELIVERIES_BUCKET):
        with contextlib.suppress(BucketNotFoundError, NotFoundError):
            await js.delete_key_value(bucket)
    await ensure_topology(js, settings)
    await js.create_key_value(KeyValueConfig(bucket=CONFIG_BUCKET, history=1,
                                             storage=StorageType.FILE))


async def put_channel(nc: Client, settings: ApiarySettings, **payload: Any) -> str:
    """Write a channel into the federation bucket as the applier does (secrets sealed);
    its key."""
    key, value = channel_entry(payload, envelope_from_settings(settings))
    kv = await nc.jetstream().key_value(CONFIG_BUCKET)
    await kv.put(key, value)
    return key


def alert(org: str, project: str, stage: Stage = "warning", *, workspace: str | None = None,
          window_end: int | None = None, alert_id: str | None = None) -> AlertNotification:
    return AlertNotification(
        org_id=org, workspace_id=workspace, alert_id=alert_id or _id("alert"),
        alert_name="Error rate", stage=stage,
        state="resolved" if stage == "resolution" else "triggered",
        value=0.62, threshold=0.5, window_s=60, window_end=window_end or int(time.time()),
        project_id=project, fired_at=datetime.now(UTC),
        link=f"https://apiary.example.com/projects/{project}/events?alert=1")


@contextlib.asynccontextmanager
async def notifier(settings: ApiarySettings, nats_url: str, name: str = "notifier-test",
                   ) -> AsyncIterator[NotifierService]:
    service = NotifierService(settings, nats_url, name)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def consumer_settled(nc: Client) -> bool:
    """Every notification acknowledged (nothing pending or held)."""
    info = await nc.jetstream().consumer_info(NOTIFICATIONS_STREAM, NOTIFIERS_CONSUMER)
    return not info.num_pending and not info.num_ack_pending
