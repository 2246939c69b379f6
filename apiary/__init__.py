"""Apiary: self-hostable tracing and evaluation for LLM applications, built on Ray.

Public surface: :class:`ApiarySettings` and :func:`load_settings` (configuration),
:mod:`apiary.errors` (the exception hierarchy), :class:`Event` (the unit of data).
Packages: ``apiary.dataplane.ingest.otlp`` (OTLP decoding and span mapping), ``apiary.queue``
(JetStream), ``apiary.store`` (ClickHouse), ``apiary.dataplane.enrich``, ``apiary.actors`` (Ray
actors), ``apiary.deployments`` (Ray Serve deployments), ``apiary.api`` (HTTP routes),
``apiary.cli`` (the ``apiary`` command).

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
