"""The control plane's federation controller in the start-up sequence: an installation
running the control plane (``--plane control`` or ``both``) starts one
:class:`~apiary.actors.cp_controller.ControlPlaneController` (named, restarted by Ray),
unless ``federation_grpc_port`` is 0."""

from __future__ import annotations

from typing import Any

from apiary.settings import ApiarySettings

NAMESPACE = "apiary"


def start_control_plane_controller(settings: ApiarySettings, *,
                                   timeout_s: float = 60.0) -> Any | None:
    """Start (or find) the controller actor and wait until it listens; its handle, or
    None when the federation endpoint is off (``federation_grpc_port`` 0). Ray must be
    initialized. A port that cannot be bound raises (the actor's error)."""
    if not settings.federation_grpc_port:
        return None
    import ray

    from apiary.actors.cp_controller import CP_CONTROLLER_NAME, ControlPlaneController

    handle = ControlPlaneController.options(  # type: ignore[attr-defined]
        name=CP_CONTROLLER_NAME, namespace=NAMESPACE, get_if_exists=True,
        max_restarts=-1, max_task_retries=0, num_cpus=0,
    ).remote(settings)
    ray.get(handle.start.remote(), timeout=timeout_s)
    return handle


def stop_control_plane_controller(handle: Any, *, timeout_s: float = 30.0) -> None:
    """Close every stream, stop listening and end the actor."""
    import ray

    try:
        ray.get(handle.stop.remote(), timeout=timeout_s)
    finally:
        ray.kill(handle, no_restart=True)


__all__ = ["start_control_plane_controller", "stop_control_plane_controller"]
