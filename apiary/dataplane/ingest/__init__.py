"""OTLP/HTTP trace ingestion: decoding (protobuf, JSON, the HoneyHive encoder), span → event
mapping, and the routes that publish to JetStream before they answer.

- :mod:`.otlp`: OTLP decoding and span → event mapping (the compiled hot path; its own
  surface is :mod:`apiary.dataplane.ingest.otlp`).
- :mod:`.routes`: ``POST /v1/traces`` and ``POST /opentelemetry/v1/traces``.

Its modules are imported by name; this package imports neither (``otlp`` is pure and
importable without FastAPI). Below it: :mod:`apiary.dataplane.replica`, ``auth`` and the
foundations (docs/architecture.md).
"""

__all__ = ["otlp", "routes"]
