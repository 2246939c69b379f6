"""Exact ingest accounting, shown to the user: per project, how many messages and rows
(events, spans, patches) were accepted, stored, dead-lettered and are in flight, with
accepted = stored + dead-lettered + in flight at all times.

- :func:`ingest_stats` (:mod:`apiary.dataplane.accounting.stats`, whose docstring states
  why the counts are exact): the ingest ledger the writers record into, joined with the
  messages the ``events`` stream still holds.
- :mod:`apiary.dataplane.accounting.routes`: ``GET /v1/ingest/stats`` (the caller's
  project; ``events:read``) and ``GET /v1/admin/ingest/stats`` (every project; the data
  plane's admin token). ``apiary status`` prints them.
"""

from apiary.dataplane.accounting.stats import (
    Accounting,
    ProjectStats,
    Retained,
    Tally,
    ingest_stats,
    retained_messages,
    tally,
)

__all__ = [
    "Accounting",
    "ProjectStats",
    "Retained",
    "Tally",
    "ingest_stats",
    "retained_messages",
    "tally",
]
