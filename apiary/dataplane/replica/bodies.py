"""The base of the product API's request bodies: unknown fields refused, and no value
that cannot be stored or answered faithfully.

Python's JSON parser accepts ``NaN`` and ``Infinity``; PostgreSQL's JSON refuses them and
a JSON answer cannot carry them, so they are a 400 here rather than a 500 later. Strings
with NUL characters (which PostgreSQL text refuses) are refused the same way.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

MAX_DEPTH = 64


def problem(value: Any) -> str | None:
    """What makes ``value`` (any JSON-like structure) unstorable, or None. Iterative, so a
    deeply nested value cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"values nest deeper than {MAX_DEPTH} levels"
        if isinstance(item, float) and not math.isfinite(item):
            return "numbers must be finite (no NaN or Infinity)"
        if isinstance(item, str) and "\x00" in item:
            return "text cannot contain NUL characters"
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and "\x00" in key:
                    return "keys cannot contain NUL characters"
                stack.append((child, depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, BaseModel):  # its fields and extra fields
            stack.extend((child, depth + 1) for _, child in item)
    return None


class StrictRequest(BaseModel):
    """A request body: unknown fields are a 400 naming them; so are unstorable values."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _storable(self) -> StrictRequest:
        for name, value in self:
            found = problem(value)
            if found is not None:
                raise ValueError(f"{name}: {found}")
        return self
