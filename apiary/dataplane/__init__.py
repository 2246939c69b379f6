"""The data plane: ingestion, the writer, events and sessions, evaluation (with its sandbox
and LLM proxy), human review, datasets, experiments and charts, over its own stores.

It shares no database and no credential with the control plane (:mod:`apiary.control`) and
imports nothing from it; it trusts it only through the keys it publishes
(:mod:`apiary.dataplane.auth`). Packages, top to bottom (each imports only those below it;
``make lint`` checks it, the module map is in ``docs/architecture.md``):

- :mod:`.app`: the data plane's FastAPI app, mounting every feature's routes.
- features: :mod:`.ingest` (OTLP), :mod:`.writer` (JetStream → ClickHouse),
  :mod:`.charts`, :mod:`.review` (annotation queues), :mod:`.configuration` (prompts and
  metrics served from the control plane); then :mod:`.evaluation` (with its sandbox and
  LLM proxy); :mod:`.experiments`; :mod:`.datasets` and :mod:`.events` (the REST events
  and sessions API).
- :mod:`.replica`: what every data-plane route runs with (context, admission, the
  control plane's client).
- :mod:`.auth` (credentials → principals), :mod:`.db` (dpdb), :mod:`.enrich` (the
  writer's enrichment), :mod:`.scaling` (pools that follow their queue).

Below the data plane: the foundations (:mod:`apiary.store`, :mod:`apiary.queue`,
:mod:`apiary.web`, ...). Above it: :mod:`apiary.actors`, :mod:`apiary.deployments`,
:mod:`apiary.startup`. Its packages are imported by name; this package imports none.
"""

__all__ = [
    "app",
    "auth",
    "charts",
    "configuration",
    "datasets",
    "db",
    "enrich",
    "evaluation",
    "events",
    "experiments",
    "ingest",
    "replica",
    "review",
    "scaling",
    "writer",
]
