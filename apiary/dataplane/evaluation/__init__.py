"""The evaluation service: scores for events, from online evaluators and explicit requests.

::

    writer ── after insert, before ack ──► online.after_write ──► evaluation.online.<project>
    POST /v1/evaluations (a run, ids, filters) ──────────► evaluation.request|run.<project>
                                                                   │ (durable pull consumer
                                                                   ▼  `evaluators`)
    EvaluatorActor / EvaluatorLoop: ledger? → score (sandbox | LLM judge) → publish patch
        ──► events.updates.<project> (Nats-Msg-Id from the task) → ledger → ack
    writers store and merge the patch: the event's ``metrics`` gain ``<name>``,
    ``<name>_explanation`` (and ``<name>_<extra>``)

Modules, one idea each:

- :mod:`~apiary.dataplane.evaluation.metrics`: the metric spec a task carries; which run online.
- :mod:`~apiary.dataplane.evaluation.tasks`: the task wire format, task ids, sampling, score
  patches.
- :mod:`~apiary.dataplane.evaluation.definitions`: the data plane's copy of online metrics (a
  JetStream key-value bucket) and the writers' TTL cache of it.
- :mod:`~apiary.dataplane.evaluation.ledger`: which tasks already produced their score.
- :mod:`~apiary.dataplane.evaluation.breakers`: per-metric circuit breakers (pause, resume).
- :mod:`~apiary.dataplane.evaluation.fairness`: metrics take turns in an evaluator.
- :mod:`~apiary.dataplane.evaluation.publish`: publishing tasks, de-duplicated.
- :mod:`~apiary.dataplane.evaluation.online`: the writer's hook.
- :mod:`~apiary.dataplane.evaluation.requests`: explicit requests (a run, ids, filters) → tasks.
- :mod:`~apiary.dataplane.evaluation.judge`: LLM judges over an OpenAI-compatible API.
- :mod:`~apiary.dataplane.evaluation.scoring`: sandbox or judge, per metric kind.
- :mod:`~apiary.dataplane.evaluation.loop`: the evaluator's consume → score → publish → ack loop.
- :mod:`~apiary.dataplane.evaluation.service`: one evaluator of the pool, as its Ray actor runs it.
- :mod:`~apiary.dataplane.evaluation.routes`: ``/v1/evaluations`` and the online evaluators.
- :mod:`~apiary.dataplane.evaluation.sandbox`: user Python metrics, isolated.
- :mod:`~apiary.dataplane.evaluation.proxy`: the LLM proxy judges (and SDKs) call.
- :mod:`~apiary.dataplane.evaluation.service`: one evaluator as the pool runs it (connect,
  scorer, loop, stats, drain); the Ray actor :class:`apiary.actors.evaluator.EvaluatorActor`
  only wraps it.

The guarantee: every task published is scored at least once and yields **one** score
per (event, metric version), whatever crashes and redeliveries happen (``tasks`` and
``loop`` say how). Human metrics are never scored here.

Its modules are imported by name; this package imports none of them. Below it:
:mod:`apiary.dataplane.experiments` (a run's events), ``events`` (models), ``replica``,
``auth``, ``db``, ``enrich`` and the foundations (docs/architecture.md).
"""

__all__ = [
    "breakers",
    "definitions",
    "fairness",
    "judge",
    "ledger",
    "loop",
    "metrics",
    "online",
    "proxy",
    "publish",
    "requests",
    "routes",
    "sandbox",
    "scoring",
    "service",
    "tasks",
]
