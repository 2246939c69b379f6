"""A nats-server and local Ray for a fault test of one actor (:func:`ray_node`, one per test
module: Ray starts once), and the bounded wait for Ray to restart a killed actor
(:func:`wait_restarted`); :func:`config_bucket` connects to it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _waits import until
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from apiary.dataplane.replica.federation_state import CONFIG_BUCKET
from apiary.queue import NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings


@contextlib.contextmanager
def ray_node(data_dir: Path, **settings: Any) -> Iterator[tuple[ApiarySettings, str]]:
    """The data plane's settings (``settings`` on top of the common ones) and the URL of a
    nats-server started in ``data_dir``; local Ray started unless already running."""
    import ray

    node_settings = ApiarySettings(
        data_dir=data_dir, ray_num_cpus=2, outbound_allowlist=("127.0.0.1",), **settings)
    nats = NatsServer(data_dir)
    url = nats.start()
    started_ray = False
    try:
        if not ray.is_initialized():
            ray.init(num_cpus=2, include_dashboard=False, namespace="apiary",
                     logging_level=logging.WARNING, log_to_driver=False, configure_logging=False,
                     object_store_memory=node_settings.ray_object_store_bytes)
            started_ray = True
        yield node_settings, url
    finally:
        if started_ray:
            ray.shutdown()
        nats.stop()


async def config_bucket(url: str, settings: ApiarySettings, name: str,
                        ) -> tuple[Client, KeyValue]:
    """A connection named ``name`` to the node's nats-server, the topology ensured, and the
    federation's configuration bucket (created)."""
    nc = await connect(url, name=name)
    js = nc.jetstream()
    await ensure_topology(js, settings)
    kv = await js.create_key_value(KeyValueConfig(bucket=CONFIG_BUCKET, history=1,
                                                  storage=StorageType.FILE))
    return nc, kv


async def wait_restarted(actor: Any, what: str, wait_s: float = 60) -> None:
    """Returns once a call reaches ``actor`` restarted by Ray and not started yet (its
    ``stats()`` says not ``running``)."""
    import ray

    async def restarted() -> bool:
        try:
            stats = await asyncio.to_thread(ray.get, actor.stats.remote(), timeout=5)
        except Exception:  # the actor is between lives
            return False
        return not stats.get("running", True)

    await until(restarted, wait_s, what)
