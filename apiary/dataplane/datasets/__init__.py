"""Datasets and datapoints: their records in the data plane's database, JSONL/CSV import and
export, and their HTTP routes (HoneyHive ``/v1/datasets``, ``/v1/datapoints``).

- :mod:`.catalog`: datasets, datapoints and dataset versions: the operations on dpdb
  (experiments read a run's dataset through it).
- :mod:`.files`: JSONL/CSV import, JSONL export, rows and events → datapoints.
- :mod:`.routes_datasets`, :mod:`.routes_datapoints`: the HTTP routes.
- :mod:`.schemas`: request and response bodies (HoneyHive shapes).

Its modules are imported by name; this package imports none of them (the app mounts
each router). Below it: :mod:`apiary.dataplane.replica`, ``auth``,
``db`` and the foundations (docs/architecture.md).
"""

__all__ = ["catalog", "files", "routes_datapoints", "routes_datasets", "schemas"]
