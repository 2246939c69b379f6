"""The data plane as a Ray Serve deployment.

One deployment serves ingestion and queries. It is configured for throughput rather than
Serve's defaults (which queue 5 requests per replica behind a Python proxy): the replica
admits ``ingest_max_inflight`` concurrent requests itself and answers 429 beyond that, and
``apiary up`` runs Serve with HAProxy ingress and direct ingress (see
:func:`apiary.deployments.serve_environment`), so HTTP goes from HAProxy straight into the
replica's own HTTP server, with no Python proxy and no extra Ray hop.

With ``otlp_grpc_port`` set (not 0), each replica also runs the OTLP/gRPC receiver
(:mod:`apiary.dataplane.ingest.otlp_grpc`) in its own event loop, on that port of the
host address: every replica on a host binds it with ``SO_REUSEPORT`` and the kernel
spreads connections over them. Serve's own gRPC proxy was not used: it needs compiled
servicer stubs registered at ``serve.start``, and adds a proxy hop and a Ray call per
request; in the replica, gRPC requests share its connections and its admission state.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.config import AutoscalingConfig

from apiary.dataplane.auth import Authenticator
from apiary.dataplane.ingest.otlp_grpc import OtlpGrpcServer
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.settings import ApiarySettings

APP_NAME = "data-plane"


@serve.ingress()
class DataPlane:
    """One replica: its connections are opened in the constructor, the app built after."""

    async def __init__(  # type: ignore[misc]  # Serve awaits an async constructor
        self, settings: ApiarySettings, nats_url: str, authenticator: Authenticator
    ) -> None:
        from apiary._private.logs import configure_logging

        configure_logging(settings)
        self._grpc: OtlpGrpcServer | None = None
        self._context = await DataPlaneContext.open(settings, nats_url, authenticator)
        if settings.otlp_grpc_port:
            receiver = OtlpGrpcServer(self._context, settings.host, settings.otlp_grpc_port)
            try:
                await receiver.start()  # a port it cannot bind fails the replica, clearly
            except BaseException:
                await self._context.close()
                raise
            self._grpc = receiver

    def __serve_build_asgi_app__(self) -> Any:
        from apiary._private.heap import freeze_startup_heap
        from apiary.dataplane.app import create_app

        app = create_app(self._context)
        # The last step of start-up: what it allocated is never traversed by the
        # collector again (its full collections were 17 % of an ingest replica's CPU).
        freeze_startup_heap()
        return app

    async def check_health(self) -> None:
        if not self._context.nc.is_connected:
            raise RuntimeError("NATS connection lost")

    async def __del__(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop()
        await self._context.close()


def data_plane_app(
    settings: ApiarySettings,
    nats_url: str,
    authenticator: Authenticator,
    *,
    num_cpus: float = 0.5,
    autoscaling: AutoscalingConfig | None = None,
) -> Any:
    """The bound Serve application of the data plane."""
    if autoscaling is None and settings.ingest_max_replicas > settings.ingest_replicas:
        autoscaling = AutoscalingConfig(
            min_replicas=settings.ingest_replicas,
            max_replicas=settings.ingest_max_replicas,
            # A request holds a replica's core for ~10 ms of decoding and mapping: a few
            # queued per replica is the sign that another core would help.
            target_ongoing_requests=3,
            metrics_interval_s=2.0,
            look_back_period_s=10.0,
            upscale_delay_s=3.0,
            downscale_delay_s=120.0,
        )
    deployment = serve.deployment(
        DataPlane,
        name="DataPlane",
        # Serve must never queue in front of our own admission control: allow more
        # than we admit, so that the replica itself answers 429 with Retry-After.
        max_ongoing_requests=settings.ingest_max_inflight * 2,
        max_queued_requests=settings.ingest_max_inflight * 4,
        num_replicas=None if autoscaling else settings.ingest_replicas,
        autoscaling_config=autoscaling,
        ray_actor_options={"num_cpus": num_cpus},
        health_check_period_s=5,
        logging_config={"enable_access_log": False, "log_level": settings.log_level},
    )
    return deployment.bind(settings, nats_url, authenticator)  # type: ignore[attr-defined]
