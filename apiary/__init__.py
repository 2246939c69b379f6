"""Apiary: self-hostable tracing and evaluation for LLM applications, built on Ray.

Public surface: :class:`ApiarySettings` and :func:`load_settings` (configuration),
:mod:`apiary.errors` (the exception hierarchy), :class:`Event` (the unit of data).
Packages: ``apiary.otlp`` (OTLP decoding and span mapping), ``apiary.queue`` (JetStream),
``apiary.store`` (ClickHouse), ``apiary.enrich``, ``apiary.actors`` (Ray actors),
``apiary.deployments`` (Ray Serve deployments), ``apiary.api`` (HTTP routes),
``apiary.cli`` (the ``apiary`` command).
"""

from apiary.event import Event, EventType
from apiary.settings import ApiarySettings, load_settings

__version__ = "0.1.0"

__all__ = ["ApiarySettings", "Event", "EventType", "__version__", "load_settings"]
