"""Bringing Apiary up: the one start-up sequence that ``apiary up`` and the clusters' Serve
applications share, and what runs it.

- :mod:`apiary.startup.sequence`: the data plane's services, step by step in one order
  (streams, ClickHouse schema, writers, evaluators under their scalers), and the data
  plane's Serve application.
- :mod:`apiary.startup.node`: :class:`~apiary.startup.node.ApiaryNode`, what ``apiary up``
  starts, supervises and stops on one machine (nats-server, Ray, the sequence, both planes'
  Serve applications, or one plane's: ``--plane control|data``).
- :mod:`apiary.startup.cluster`: the import paths of the clusters' Serve configs (one Ray
  cluster per plane), and ``python -m apiary.startup.cluster check|config|env``.
- :mod:`apiary.startup.plane_checks`: what a plane's cluster must, and must not, be
  configured with.
- :mod:`apiary.startup.bootstrap`: the bootstrap tenant of an embedded installation.

Above :mod:`apiary.deployments` (the Serve wrappers it deploys) and :mod:`apiary.actors`.
Submodules are not imported here: ``apiary status`` reads a node's state without importing
Ray, and ``python -m apiary.startup.cluster`` runs its module once.
"""

__all__ = ["bootstrap", "cluster", "node", "plane_checks", "sequence"]
