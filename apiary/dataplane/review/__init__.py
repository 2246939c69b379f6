"""Human review: annotation queues of events, reviewers, and scores recorded as feedback.

- :mod:`.queues`: queues of a project in dpdb, with their rules (export filters) and
  reviewers.
- :mod:`.items`: the events in a queue: adding (by hand or by rule), assigning, claiming,
  skipping, completing with a score.
- :mod:`.filler`: fills queues from their rules, from the event store, periodically.
- :mod:`.routes`: ``/v1/queues`` and their items over HTTP.
- :mod:`.schemas`: request and response bodies.

A score is feedback on the event: the API publishes it as an update of the event's
``feedback`` (an :class:`~apiary.event.EventPatch`, stored by the writers like any update)
and completes the item; exports and reads of the event show it.

Its modules are imported by name; this package imports none of them. Below it:
:mod:`apiary.dataplane.events` (publishing the score, its models), ``replica``, ``auth``,
``db`` and the foundations (docs/architecture.md).
"""

__all__ = ["filler", "items", "queues", "routes", "schemas"]
