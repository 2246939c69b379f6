"""The one start-up path of the data plane's services, shared by ``apiary up``
(:class:`~apiary.startup.node.ApiaryNode`) and a cluster's ``pools`` application
(:mod:`apiary.startup.cluster`, run by :class:`~apiary.deployments.pools.PoolSupervisor`).

:class:`DataPlaneServices` runs the steps in this order; each relies on the ones before it:

1. :meth:`~DataPlaneServices.ensure_streams`: the JetStream streams and durable consumers
   exist with the configured limits (idempotent).
2. :meth:`~DataPlaneServices.prepare_clickhouse`: the ClickHouse schema is at the latest
   migration, applied to the server, or by the chDB owner actor this step starts (embedded
   store, ``apiary up`` only).
3. :meth:`~DataPlaneServices.start_writers`: ``APIARY_WRITER_COUNT`` writer actors consume
   ``events/writers``.
4. :meth:`~DataPlaneServices.start_scalers`: the evaluator pool (and the extra writers, with
   ``APIARY_WRITER_MAX``) runs under its pool scaler (:mod:`apiary.actors.scaler`).
5. :meth:`~DataPlaneServices.start_notifiers`: ``APIARY_NOTIFIER_COUNT`` notifier actors
   deliver ``notifications/notifiers`` (:mod:`apiary.actors.notifier`).
5b. :meth:`~DataPlaneServices.start_alert_evaluator`: the data plane's alert evaluator actor
   measures every alert rule each ``APIARY_ALERT_INTERVAL_S`` (:mod:`apiary.actors.
   alert_evaluator`).
6. :meth:`~DataPlaneServices.start_controller` (a federated data plane only: an identity
   file or ``APIARY_BOOTSTRAP_TOKEN``): the data plane registers with its bootstrap token
   if it has no identity yet, and its federation controller actor
   (:mod:`apiary.actors.dp_controller`) keeps the stream to the control plane.

:meth:`~DataPlaneServices.stop` reverses it: the notifiers stop first (they hand back what
they hold; the delivery records keep a later notifier from sending twice), evaluators drain
next (the scores they publish are stored by the writers), then the writers (they store and
acknowledge what they hold), then the chDB owner. The data plane's HTTP face is one more
shared step, :func:`data_plane_application`. Where the actors run is a :class:`Placement`:
:data:`NODE_PLACEMENT` on one machine, the cluster's node resources on a cluster. The data
plane's own database (dpdb) is not a step: every replica migrates it on first use.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from apiary.queue import connect, describe_url, ensure_topology
from apiary.settings import ApiarySettings

#: Receives one line per step (``apiary up`` prints it; a cluster logs it).
Progress = Callable[[str], None]
#: The Ray namespace of every named actor Apiary starts.
NAMESPACE = "apiary"
log = logging.getLogger(__name__)


def log_progress(message: str) -> None:
    """The :data:`Progress` of a cluster: each line to this module's log, at INFO."""
    log.info("%s", message.strip())


@dataclass(frozen=True)
class Placement:
    """Where the pools' actors run: the Ray actor options of each writer and evaluator.

    ``adopt_writers`` makes the writer pool take over running writers of the same name
    (``get_if_exists``): a restarted cluster supervisor adopts the writers it left (and its
    notifiers). ``notifier``: the options of each notifier (network-bound: no CPU reserved,
    no node resource, so it never waits for a writer's or an evaluator's slot).
    """

    writer: Mapping[str, Any]
    evaluator: Mapping[str, Any]
    adopt_writers: bool = False
    notifier: Mapping[str, Any] = field(default_factory=lambda: {"num_cpus": 0})


#: ``apiary up``: a quarter of a core each, anywhere in the local Ray instance.
NODE_PLACEMENT = Placement(writer={"num_cpus": 0.25}, evaluator={"num_cpus": 0.25})


class DataPlaneServices:
    """The data plane's services behind its HTTP face, started step by step (module
    docstring) and stopped in reverse. Not re-entrant; one per installation.

    Picklable until started: a cluster binds it, unstarted, to its ``pools`` application.
    """

    def __init__(
        self,
        settings: ApiarySettings,
        nats_url: str,
        placement: Placement,
        *,
        client_name: str,
        progress: Progress = log_progress,
    ) -> None:
        self.settings = settings
        self.nats_url = nats_url
        self.placement = placement
        self._client_name = client_name
        self._progress = progress
        self._clickhouse: Any = None
        self._writers: Any = None
        self._scalers: list[Any] = []
        self._notifiers: Any = None
        self._alert_evaluator: Any = None
        self._controller: Any = None

    # -- the steps, in order --------------------------------------------------------------

    async def ensure_streams(self) -> list[str]:
        """Step 1: create or update the streams and consumers; the changes made (none when
        they were as configured)."""
        self._progress(f"ensuring streams and consumers on {describe_url(self.nats_url)}")
        nc = await connect(self.nats_url, name=self._client_name)
        try:
            changes = await ensure_topology(nc.jetstream(), self.settings)
        finally:
            await nc.close()
        for change in changes:
            self._progress(f"  {change}")
        return changes

    def prepare_clickhouse(self) -> list[str]:
        """Step 2 (blocking; Ray must be up for an embedded store): the migrations applied.

        A server is migrated from this process. An embedded store (chDB) gets its owner
        actor, named so that every writer and replica finds it, pinned to this machine
        (its files are here); it migrates as it starts.
        """
        self._progress("applying the ClickHouse schema")
        if self.settings.embedded_clickhouse:
            versions = self._start_clickhouse_owner()
        else:
            from apiary.store import migrate_server

            versions = migrate_server(self.settings)
        for version in versions:
            self._progress(f"  applied migration {version}")
        return versions

    def _start_clickhouse_owner(self) -> list[str]:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from apiary.actors.clickhouse import CLICKHOUSE_ACTOR_NAME, ClickHouseActor

        here = ray.get_runtime_context().get_node_id()
        # Restarted by Ray whenever it dies, on this node (its files are here); callers see
        # the gap as StoreUnavailable and wait (apiary.actors.clickhouse).
        self._clickhouse = ClickHouseActor.options(  # type: ignore[attr-defined]
            name=CLICKHOUSE_ACTOR_NAME,
            namespace=NAMESPACE,
            max_restarts=-1,
            max_task_retries=0,
            num_cpus=0.25,
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
        ).remote(self.settings)
        return list(ray.get(self._clickhouse.applied_migrations.remote()))

    def start_writers(self) -> None:
        """Step 3 (blocking): the writer pool runs; returns once every writer has started.
        A pool that fails to start is still stopped by :meth:`stop`."""
        from apiary.actors.writer import WriterPool

        self._progress(f"starting {self.settings.writer_count} writer actor(s)")
        options = dict(self.placement.writer)
        if self.placement.adopt_writers:
            options["get_if_exists"] = True
        self._writers = WriterPool(self.settings, self.nats_url, **options)
        self._writers.start()

    def start_scalers(self) -> None:
        """Step 4 (blocking): the pool scalers run, each growing its pool to its minimum."""
        from apiary.actors.scaler import start_scalers

        s = self.settings
        self._progress(f"starting {s.evaluator_min}-{s.evaluator_max} evaluator actor(s) and "
                       "the pool scaler(s)")
        self._scalers = start_scalers(
            s, self.nats_url, evaluator_options=dict(self.placement.evaluator),
            writer_options=dict(self.placement.writer))

    def start_notifiers(self) -> None:
        """Step 5 (blocking): the notifier pool runs (none with ``notifier_count`` 0);
        returns once every notifier has started. Stopped by :meth:`stop` even if it failed
        part-way."""
        from apiary.actors.notifier import NotifierPool

        count = self.settings.notifier_count
        self._progress(f"starting {count} notifier actor(s)")
        options = dict(self.placement.notifier)
        if self.placement.adopt_writers:
            options["get_if_exists"] = True
        self._notifiers = NotifierPool(self.settings, self.nats_url, **options)
        self._notifiers.start(count)

    def start_alert_evaluator(self) -> None:
        """Step 5b (blocking): the alert evaluator actor (one per data plane, named, restarted
        by Ray) runs its loop; returns once it started."""
        from apiary.actors.alert_evaluator import start_alert_evaluator

        self._progress(f"starting the alert evaluator (every "
                       f"{self.settings.alert_interval_s} s)")
        self._alert_evaluator = start_alert_evaluator(self.settings, self.nats_url)

    def alert_evaluator_stats(self) -> dict[str, Any] | None:
        """The alert evaluator's stats (None before step 5b)."""
        if self._alert_evaluator is None:
            return None
        import ray

        stats: dict[str, Any] = ray.get(self._alert_evaluator.stats.remote(), timeout=30)
        return stats

    def start_controller(self) -> bool:
        """Step 6 (blocking): on a federated data plane, register if needed
        (:func:`~apiary.dataplane.federation.ensure_identity`: a refused bootstrap token is
        a ConfigurationError saying why) and start the federation controller actor; whether
        one runs. Ingestion never waits for it: it only dials the control plane."""
        if not self.settings.federated:
            return False
        import ray

        from apiary.actors.dp_controller import DP_CONTROLLER_NAME, DataPlaneControllerActor
        from apiary.dataplane.federation import ensure_identity

        identity = ensure_identity(self.settings)
        self._progress(f"starting the federation controller (data plane "
                       f"{identity.data_plane_id}, control plane "
                       f"{self.settings.federation_endpoint or identity.federation_endpoint})")
        self._controller = DataPlaneControllerActor.options(  # type: ignore[attr-defined]
            name=DP_CONTROLLER_NAME, namespace=NAMESPACE, get_if_exists=True,
            max_restarts=-1, max_task_retries=0, num_cpus=0,
        ).remote(self.settings, self.nats_url)
        ray.get(self._controller.start.remote(), timeout=60)
        return True

    def controller_status(self) -> dict[str, Any] | None:
        """The federation controller's state (None when this data plane is not federated)."""
        if self._controller is None:
            return None
        import ray

        status: dict[str, Any] = ray.get(self._controller.status.remote(), timeout=30)
        return status

    # -- composites (a cluster runs them; ``apiary up`` starts Ray between 1 and 2) -------

    async def prepare(self) -> None:
        """Steps 1 and 2: the stores are ready for the pools."""
        await self.ensure_streams()
        await asyncio.to_thread(self.prepare_clickhouse)

    def start(self) -> None:
        """Steps 3 to 5 (blocking): writers, then the evaluators that need them, then the
        notifiers, then the federation controller (a federated data plane only)."""
        self.start_writers()
        self.start_scalers()
        self.start_notifiers()
        self.start_alert_evaluator()
        self.start_controller()

    # -- running --------------------------------------------------------------------------

    def ensure_running(self) -> None:
        """Start again whatever Ray restarted after a crash (writers, scalers) and any loop
        whose supervisor ended; idempotent. What cannot be reached now (Ray is restarting
        it) is logged and left to the next call. The chDB owner needs nothing: Ray restarts
        it (``max_restarts=-1``) and it re-opens its data directory itself."""
        if self._writers is not None:
            for skipped in self._writers.ensure_running():
                log.warning("writer not running yet", extra={"error": skipped})
        if self._notifiers is not None:
            for skipped in self._notifiers.ensure_running():
                log.warning("notifier not running yet", extra={"error": skipped})
        if self._alert_evaluator is not None:
            from apiary.actors.alert_evaluator import ensure_alert_evaluator

            try:
                ensure_alert_evaluator(self._alert_evaluator)
            except Exception as exc:  # restarting: the next call starts it
                log.warning("alert evaluator not running yet", extra={"error": repr(exc)})
        if self._controller is not None:
            import ray

            try:
                ray.get(self._controller.ensure_running.remote(), timeout=60)
            except Exception as exc:  # restarting: the next call starts it
                log.warning("federation controller not running yet",
                            extra={"error": repr(exc)})
        if self._scalers:
            import ray

            for scaler in self._scalers:
                try:
                    ray.get(scaler.ensure_running.remote(), timeout=60)
                except Exception as exc:  # restarting: the next call starts it
                    log.warning("pool scaler not running yet", extra={"error": repr(exc)})

    def writer_stats(self) -> list[dict[str, Any]]:
        """Each base writer's counters (empty before step 3)."""
        return [] if self._writers is None else list(self._writers.stats())

    def pool_status(self) -> list[dict[str, Any]]:
        """What each pool scaler (evaluators, extra writers) sees and has."""
        import ray

        return list(ray.get([scaler.status.remote() for scaler in self._scalers]))

    # -- stop -----------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Drain and stop what was started, evaluators before writers before the chDB owner.

        Keeps going past a failure; returns one line per failure (empty when clean). Safe
        to call twice, and after a start that failed part-way.
        """
        errors: list[str] = []

        def attempt(what: str, action: Callable[[], object]) -> None:
            try:
                action()
            except Exception as exc:  # keep stopping the rest
                errors.append(f"{what}: {exc}")

        if self._controller is not None:
            import ray

            controller, self._controller = self._controller, None
            attempt("federation controller",
                    lambda: ray.get(controller.stop.remote(), timeout=30))
            attempt("federation controller", lambda: ray.kill(controller))
        if self._alert_evaluator is not None:
            from apiary.actors.alert_evaluator import stop_alert_evaluator

            evaluator, self._alert_evaluator = self._alert_evaluator, None
            self._progress("stopping the alert evaluator")
            attempt("alert evaluator", lambda: stop_alert_evaluator(evaluator))
        if self._notifiers is not None:
            notifiers, self._notifiers = self._notifiers, None
            self._progress("stopping notifiers")
            attempt("notifiers", notifiers.stop)
        if self._scalers:
            from apiary.actors.scaler import stop_scalers

            scalers, self._scalers = self._scalers, []
            # Evaluators first: the scores they publish are stored by the writers.
            self._progress("draining evaluators (and scaled writers)")
            attempt("scalers", lambda: stop_scalers(scalers))
        if self._writers is not None:
            writers, self._writers = self._writers, None
            self._progress("draining writers")
            attempt("writers", writers.stop)
        if self._clickhouse is not None:
            import ray

            owner, self._clickhouse = self._clickhouse, None
            attempt("clickhouse", lambda: ray.get(owner.close.remote(), timeout=30))
            attempt("clickhouse", lambda: ray.kill(owner))
        return errors


def data_plane_application(settings: ApiarySettings, nats_url: str) -> Any:
    """The data plane's bound Serve application (ingestion, queries, the LLM proxy), which
    trusts the control plane at ``settings.control_plane_url`` only through its JWKS and
    token exchange. Deploy it at ``/``.

    A federated data plane (identity file or ``APIARY_BOOTSTRAP_TOKEN``) registers first if
    it must, then requests its tokens as its registered identity (the audience is its id, and
    every exchange carries its identity JWT); its replicas sign with the key in the data
    directory."""
    from apiary.dataplane.auth import control_plane_authenticator
    from apiary.deployments.data_plane import data_plane_app

    if settings.federated:
        from apiary.dataplane.federation import ensure_identity

        identity = ensure_identity(settings)
        authenticator = control_plane_authenticator(
            settings, data_plane_id=identity.data_plane_id, identity=identity.mint,
            issuer=identity.issuer)
    else:
        authenticator = control_plane_authenticator(settings)
    return data_plane_app(settings, nats_url, authenticator)
