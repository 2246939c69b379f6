"""The data plane: ingestion, the writer, events and sessions, evaluation (with its sandbox
and LLM proxy), human review, datasets, experiments and charts, over its own stores.

It shares no database and no credential with the control plane (:mod:`apiary.control`) and
imports nothing from it; it trusts it only through the keys it publishes
(:mod:`apiary.dataplane.auth`). The module map is in ``docs/architecture.md``."""
