"""What the control-plane controller actor's tests share: local Ray for the module, the
control plane's settings (cpdb on SQLite, a fresh envelope key, a free federation port), and
the bounded wait for the killed actor's restarted process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _servers import free_port

from apiary.settings import ApiarySettings


@contextlib.contextmanager
def local_ray(namespace: str) -> Iterator[None]:
    """Local Ray in ``namespace`` unless already running (then left running on exit)."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, namespace=namespace, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def controller_settings(data_dir: Path, issuer: str, **extra: Any) -> ApiarySettings:
    """The control plane's settings in ``data_dir`` (``extra`` on top)."""
    return ApiarySettings(  # type: ignore[call-arg]
        data_dir=data_dir, cp_database_url=f"sqlite:///{data_dir / 'cp.sqlite'}",
        cp_issuer=issuer, cp_envelope_key=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        federation_grpc_port=free_port(), **extra)


async def wait_restarted(handle: Any, before: dict[str, Any],
                         ) -> tuple[list[Any], dict[str, Any]]:
    """Calls ``ensure_running`` (as the supervisor does) until the process Ray restarted
    answers: a ``status()`` whose pid is not ``before``'s, within 60 s. Returns what every
    ``ensure_running`` that answered returned, and that status."""
    import ray

    answers: list[Any] = []
    deadline = time.monotonic() + 60
    while True:  # until the restarted process answers (bounded)
        try:
            answers.append(ray.get(handle.ensure_running.remote(), timeout=30))
            after: dict[str, Any] = ray.get(handle.status.remote(), timeout=30)
            if after["pid"] != before["pid"]:
                return answers, after
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
            pass
        assert time.monotonic() < deadline, "the controller was not restarted"
        await asyncio.sleep(0.2)
