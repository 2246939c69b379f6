"""Charts: saved chart definitions (HoneyHive ``/v1/charts``) and chart data over HTTP.

- :mod:`.saved`: saved charts, the operations on dpdb.
- :mod:`.routes`: saved charts and chart data (planned and run by :mod:`apiary.store`).
- :mod:`.schemas`: request and response bodies of charts and chart queries.

Its modules are imported by name; this package imports none of them (the app mounts
each router). Below it: :mod:`apiary.dataplane.events` (its
models), ``replica``, ``auth``, ``db`` and the foundations (docs/architecture.md).
"""

__all__ = ["routes", "saved", "schemas"]
