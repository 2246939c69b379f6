"""What a setting's declaration may say besides its type and constraints.

A field's ``json_schema_extra`` carries Apiary's own marks, read by :mod:`._planes` and
:mod:`._help`:

- ``secret``: the value is a credential of its plane (a key, or a URL that may hold a
  password); a node of the other plane must not hold it.
- ``cluster_required``: a plane's Ray cluster refuses to start without it (no embedded store,
  no generated key file).
- ``default_help``: how the help text states a default that a factory computes.
"""

from __future__ import annotations

from pydantic import JsonValue

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def on_cluster(*, secret: bool = False, required: bool = False) -> dict[str, JsonValue]:
    """Marks of a setting's role in a cluster deployment (see the module docstring)."""
    marks: dict[str, JsonValue] = {}
    if secret:
        marks["secret"] = True
    if required:
        marks["cluster_required"] = True
    return marks


def default_help(text: str) -> dict[str, JsonValue]:
    """Mark stating, for the help text, the default of a field with a ``default_factory``."""
    return {"default_help": text}


def comma_separated(value: object) -> list[object] | None:
    """The items of a comma-separated string (the environment's form) or of a list or tuple
    (code's form); ``None`` for anything else, which the field's type then rejects."""
    items = value.split(",") if isinstance(value, str) else value
    return list(items) if isinstance(items, (list, tuple)) else None
