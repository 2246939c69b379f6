"""What the pooled actors share: the service interface they wrap, and a fixed pool of them.

:class:`ServiceActor` is the body of an actor that runs one service (a writer, notifier or
evaluator service: the loop, its stats and its stop live there) and forwards the calls a
pool makes: ``start`` (idempotent: a restarted actor starts again), ``ensure_running``,
``stats`` and ``stop`` (each service's ``stop`` says what it drains or hands back). Each
actor class makes itself a Ray actor (``@ray.remote``, restarted by Ray if it dies) and
builds its service in ``__init__``.

:class:`NamedActorPool` starts ``count`` actors of one such class, named ``<prefix>-<i>``
in the ``apiary`` namespace, each constructed as ``(settings, nats_url, name)``;
:meth:`~NamedActorPool.ensure_running` starts the loops of restarted actors. Pools that a
scaler sizes live in :mod:`apiary.dataplane.scaling` instead.
"""

from __future__ import annotations

from typing import Any, Protocol

import ray

from apiary.settings import ApiarySettings

NAMESPACE = "apiary"


class PooledService(Protocol):
    """The calls a pooled actor forwards to its service."""

    async def start(self) -> None: ...

    async def ensure_running(self) -> None: ...

    async def stats(self) -> dict[str, Any]: ...

    async def stop(self) -> dict[str, Any]: ...


class ServiceActor:
    """An actor's body that forwards the pool's calls to ``self._service`` (set by the
    subclass's ``__init__``)."""

    _service: PooledService

    async def start(self) -> None:
        """Connect and start the service's supervised loop; idempotent (a restarted actor
        starts again), and starts the loop again if its task ended."""
        await self._service.start()

    async def ensure_running(self) -> None:
        """Start the loop again if its task ended (the service's ``start``)."""
        await self._service.ensure_running()

    async def stats(self) -> dict[str, Any]:
        return await self._service.stats()

    async def stop(self) -> dict[str, Any]:
        """The service's stop: drain or hand back what is held, then disconnect."""
        return await self._service.stop()


class NamedActorPool:
    """Starts, inspects and stops the named actors ``<prefix>-<i>`` of ``actor_class``
    (a ``@ray.remote`` class). ``actor_options`` are passed to ``.options`` (``num_cpus``
    defaults to 0)."""

    def __init__(self, actor_class: Any, prefix: str, settings: ApiarySettings,
                 nats_url: str, **actor_options: Any) -> None:
        self._actor_class = actor_class
        self._prefix = prefix
        self._settings = settings
        self._nats_url = nats_url
        self._options = actor_options
        self.actors: list[Any] = []

    def _name(self, i: int) -> str:
        return f"{self._prefix}-{i}"

    def start(self, count: int) -> None:
        """Start ``count`` actors; returns once each has started."""
        for i in range(count):
            name = self._name(i)
            actor = self._actor_class.options(
                name=name, namespace=NAMESPACE, **{"num_cpus": 0, **self._options},
            ).remote(self._settings, self._nats_url, name)
            self.actors.append(actor)
        ray.get([a.start.remote() for a in self.actors])

    def ensure_running(self) -> list[str]:
        """Start any actor Ray restarted after a crash, or whose loop's supervisor ended
        (``start`` is idempotent). An actor that cannot be reached now (Ray is restarting
        it) is skipped: the next call starts it. Returns one line per actor skipped."""
        skipped: list[str] = []
        refs = [a.ensure_running.remote() for a in self.actors]
        for i, ref in enumerate(refs):
            try:
                ray.get(ref, timeout=60)
            except Exception as exc:  # a dead or restarting actor: try again next round
                skipped.append(f"{self._name(i)}: {exc!r}")
        return skipped

    def stats(self) -> list[dict[str, Any]]:
        """Each actor's stats, in the order they were started."""
        return list(ray.get([a.stats.remote() for a in self.actors]))

    def stop(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Stop every actor (each drains as its service says), then kill it for good;
        returns what each stop returned. The pool is empty afterwards."""
        results: list[dict[str, Any]] = []
        if self.actors:
            results = list(ray.get([a.stop.remote() for a in self.actors], timeout=timeout))
            for a in self.actors:
                ray.kill(a, no_restart=True)
        self.actors = []
        return results
