"""Configuration the control plane owns, served to SDKs by the data plane: prompt templates
(HoneyHive ``/v1/configurations``) and metric definitions (``/v1/metrics``).

- :mod:`.routes_prompts`: prompt configurations, read from and written to the control
  plane through :mod:`apiary.dataplane.replica.control_plane`.
- :mod:`.routes_metrics`: metric definitions ⇄ the control plane's evaluators (and the
  online evaluators' refresh, :mod:`apiary.dataplane.evaluation`).
- :mod:`.schemas`: request and response bodies.

Its modules are imported by name; this package imports none of them (the app mounts
each router). Below it: :mod:`apiary.dataplane.evaluation`,
``experiments`` (pass rules), ``replica``, ``auth`` and the foundations
(docs/architecture.md).
"""

__all__ = ["routes_metrics", "routes_prompts", "schemas"]
