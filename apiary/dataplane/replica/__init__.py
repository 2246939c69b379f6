"""What every data-plane route runs with: the replica's context and admission control, the
request-body base, shared route helpers, and the client of the control plane's API.

- :mod:`.context`: :class:`~apiary.dataplane.replica.context.DataPlaneContext`, the state
  one replica serves requests with (store client, publisher, authenticator, databases),
  and its admission control.
- :mod:`.routing`: what the product routers share (the principal of a project, errors as
  HoneyHive shapes, credentials).
- :mod:`.bodies`: the base of the product API's request bodies (unknown fields refused).
- :mod:`.control_plane`: the data plane's client of the control plane's configuration API
  (the trusted seam).

Its modules are imported by name; this package imports none of them. Every feature
package sits above it; below it: ``auth``, ``db``, ``enrich`` and the foundations
(docs/architecture.md).
"""

__all__ = ["bodies", "context", "control_plane", "routing"]
