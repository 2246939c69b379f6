"""Enrichment of events in the writer: session linking, inheritance, computed fields.

Public surface: :class:`Enricher`, :class:`Lookups`, :class:`SessionContext`,
:class:`PriceTable`, :func:`session_id_for_trace`.
"""

from apiary.dataplane.enrich._enricher import (
    Enricher,
    Lookups,
    SessionContext,
    session_id_for_trace,
)
from apiary.dataplane.enrich._prices import ModelPrice, PriceTable

__all__ = [
    "Enricher",
    "Lookups",
    "ModelPrice",
    "PriceTable",
    "SessionContext",
    "session_id_for_trace",
]
