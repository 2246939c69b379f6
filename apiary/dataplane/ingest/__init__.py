"""OTLP trace ingestion (HTTP and gRPC): decoding (protobuf, JSON, the HoneyHive encoder),
span → event mapping, and the receivers that publish to JetStream before they answer.

- :mod:`.otlp`: OTLP decoding and span → event mapping (the compiled hot path; its own
  surface is :mod:`apiary.dataplane.ingest.otlp`).
- :mod:`.accept`: the one path both transports take (authorize, decode, map, publish).
- :mod:`.routes`: ``POST /v1/traces`` and ``POST /opentelemetry/v1/traces``.
- :mod:`.otlp_grpc`: ``TraceService/Export`` over gRPC, a server in each replica.

Its modules are imported by name; this package imports none of them (``otlp`` is pure and
importable without FastAPI). Below it: :mod:`apiary.dataplane.replica`, ``auth`` and the
foundations (docs/architecture.md).
"""

__all__ = ["accept", "otlp", "otlp_grpc", "routes"]
