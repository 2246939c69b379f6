"""Ray actors: the stateful parts of the data plane, as thin wrappers over the services
that hold the logic. One module per actor, imported on demand (each pulls its service):

- :mod:`~apiary.actors.clickhouse`: ``ClickHouseActor``, the owner of embedded chDB, over
  :mod:`apiary.store` (which also holds the client every process reaches it with);
- :mod:`~apiary.actors.writer`: ``EventWriter`` and ``WriterPool``, over
  :class:`apiary.dataplane.writer.WriterService`;
- :mod:`~apiary.actors.evaluator`: ``EvaluatorActor``, over
  :class:`apiary.dataplane.evaluation.service.EvaluatorService`;
- :mod:`~apiary.actors.scaler`: ``PoolScaler`` (with ``start_scalers``/``stop_scalers``),
  over :class:`apiary.dataplane.scaling.BacklogScaler`.

What the pooled actors share lives in ``_pool``: ``ServiceActor`` (the body that forwards
``start``/``ensure_running``/``stats``/``stop`` to the actor's service) and
``NamedActorPool`` (a fixed pool of named actors: ``WriterPool`` and
:mod:`~apiary.actors.notifier`'s ``NotifierPool``).

Nothing below this package (``apiary.dataplane``, ``apiary.store``) imports it.
"""

__all__ = ["clickhouse", "evaluator", "scaler", "writer"]
