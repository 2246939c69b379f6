"""Apiary: self-hostable tracing and evaluation for LLM applications, built on Ray.

Public surface: :class:`ApiarySettings` and :func:`load_settings` (configuration),
:mod:`apiary.errors` (the exception hierarchy), :class:`Event` (the unit of data).

Packages, top to bottom (the module map of ``docs/architecture.md``; a package imports
only those below it, which ``make lint`` checks against ``[tool.importlinter]``):

- entry points: ``apiary.cli`` (the ``apiary`` command), ``apiary.startup`` (the one
  start-up sequence ``apiary up`` and the clusters' Serve applications share);
- Ray wrappers: ``apiary.deployments`` (Serve deployments), ``apiary.actors`` (actors);
- the two planes, which never import each other: ``apiary.control`` and
  ``apiary.dataplane``;
- foundations: ``apiary.web`` (HTTP helpers), ``apiary.store`` (ClickHouse),
  ``apiary.queue`` (JetStream), ``apiary.ratelimit``, ``apiary.outbound`` (the
  outbound-URL policy), ``apiary.credentials`` (the shapes of keys and tokens),
  ``apiary.envelope`` (sealing secrets at rest), then
  ``apiary.objects`` (object storage), ``apiary._private`` (shared internals),
  ``apiary.event`` and ``apiary.settings``, and ``apiary.errors`` at the bottom.

Importing it refuses (``ImportError``, saying how to fix it) when the compiled ingest hot
path (``make compile``) no longer matches its sources: see :mod:`apiary._private.compiled`.
"""

from apiary._private import compiled as _compiled

# Before anything below imports a compiled module in its stale form.
COMPILED_MODULES = _compiled.verify()

from apiary.event import Event, EventType  # noqa: E402
from apiary.settings import ApiarySettings, load_settings  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "COMPILED_MODULES", "ApiarySettings", "Event", "EventType", "__version__", "load_settings",
]
