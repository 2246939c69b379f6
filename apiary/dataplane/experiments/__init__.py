"""Experiment runs: their records, results computed from stored events, comparisons, and
their HTTP routes (HoneyHive ``/v1/runs``).

- :mod:`.runs`: experiment runs in dpdb (the evaluation service reads a run's events
  through it).
- :mod:`.results`: results from stored events: pass rules (from ``passing_ranges`` or the
  evaluators' thresholds), pass/fail, per-datapoint results, comparisons.
- :mod:`.routes`: ``/v1/runs``: CRUD, results, comparisons.
- :mod:`.schemas`: request and response bodies.

Its modules are imported by name; this package imports none of them (the app mounts
each router). Below it: :mod:`apiary.dataplane.datasets`,
``events``, ``replica``, ``auth``, ``db`` and the foundations (docs/architecture.md).
"""

__all__ = ["results", "routes", "runs", "schemas"]
