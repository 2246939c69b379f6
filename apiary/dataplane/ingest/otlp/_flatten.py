"""Un-flattening dotted attribute keys into nested JSON objects, losing nothing.

OTLP attributes are flat: the HoneyHive SDK writes ``{"a": {"b": [1, 2]}}`` as
``honeyhive_x.a.b.0 = 1`` and ``honeyhive_x.a.b.1 = 2``. Events hold nested objects, so
dotted keys are split on ``.`` and rebuilt:

- a node whose keys are exactly ``"0" .. "n-1"`` (a dense sequence) becomes a list, in
  index order. The HoneyHive SDK skips ``None`` items when it flattens a list, leaving
  gaps: a node whose keys are all indices, starting at ``"0"``, with fewer gaps than items
  (highest index < 2 * items) becomes a list too, with ``None`` in the gaps. Anything else
  keeps it an object (with the digit strings as keys).
  Only nodes built here are turned into lists; a ``dict`` value that arrived as such
  (a ``kvlistValue``, decoded JSON) keeps its shape.
- a **leaf/subtree collision** (``a = 1`` and ``a.b = 2``) keeps both: the leaf moves into
  the subtree under :data:`VALUE_KEY` (``{"a": {"_value": 1, "b": 2}}``), whichever came
  first. Should that slot be taken too, the value goes to the first free key among
  ``__value``, ``___value``, ... (and likewise for any other leaf/leaf clash inside one
  flat mapping), so nothing is ever dropped.
- equal values at the same path are one value (aliases of one fact).

When several sources are merged into one tree (explicit HoneyHive fields, then values
derived by conventions, then unknown attributes) a leaf/leaf clash between *different*
values is reported to the caller instead (``place``/``insert`` return ``False``,
``merge_flat`` fills ``conflicts``), which keeps the loser elsewhere.

Values already in a tree may be mutated by later merges (merging into a subtree), but the
value being merged never is: a shared object inserted last stays untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Any

VALUE_KEY = "_value"

_MISSING: Any = object()

Created = list[tuple[dict[str, Any], str, dict[str, Any]]]


def place(node: dict[str, Any], key: str, value: Any) -> bool:
    """Set ``node[key] = value``, merging with what is there; ``False`` on a clash.

    A dict merges into a dict key by key; a leaf meeting a subtree goes to its
    :data:`VALUE_KEY`; two different leaves clash (the existing one stays).
    """
    old = node.get(key, _MISSING)
    if old is _MISSING:
        node[key] = value
        return True
    if type(old) is dict:
        if type(value) is dict:
            ok = True
            for k, v in value.items():
                if not place(old, k, v):
                    ok = False
            return ok
        return place(old, VALUE_KEY, value)
    if old == value and type(old) is type(value):
        return True
    if type(value) is dict:
        merged: dict[str, Any] = {VALUE_KEY: old}
        ok = True
        for k, v in value.items():
            if not place(merged, k, v):
                ok = False
        node[key] = merged
        return ok
    return False


def insert(tree: dict[str, Any], parts: list[str], value: Any, created: Created) -> bool:
    """Place ``value`` at the path ``parts``, building (and recording) missing nodes."""
    node = tree
    for i in range(len(parts) - 1):
        seg = parts[i]
        child = node.get(seg, _MISSING)
        if type(child) is not dict:
            child = {} if child is _MISSING else {VALUE_KEY: child}
            node[seg] = child
            created.append((node, seg, child))
        node = child
    return place(node, parts[-1], value)


def densify(created: Created) -> None:
    """Turn the recorded nodes that are index maps (``"0".."n-1"``, or with the gaps the
    SDK leaves for ``None`` items) into lists."""
    for parent, key, node in reversed(created):
        if "0" not in node or parent.get(key) is not node:
            continue
        n = len(node)
        if all(str(i) in node for i in range(n)):
            parent[key] = [node[str(i)] for i in range(n)]
            continue
        indices = [_index(k) for k in node]
        if all(i is not None for i in indices):
            top = max(i for i in indices if i is not None)
            if top < 2 * n:
                parent[key] = [node.get(str(i)) for i in range(top + 1)]


def _index(key: str) -> int | None:
    """``key`` as a list index if it is one written canonically (``"7"``, not ``"07"``)."""
    if key.isascii() and key.isdigit() and (key == "0" or key[0] != "0"):
        return int(key)
    return None


def _aside(tree: dict[str, Any], parts: list[str], value: Any) -> None:
    """Keep a clashing ``value`` next to its path, under the first free ``_``-prefixed key."""
    node = tree
    for seg in parts[:-1]:
        node = node[seg]
    key = parts[-1]
    target = node.get(key)
    if type(target) is dict:
        node, key = target, VALUE_KEY
    while key in node:
        key = "_" + key
    node[key] = value


def merge_flat(
    tree: dict[str, Any],
    flat: Mapping[str, Any],
    conflicts: dict[str, Any] | None = None,
    prefix: str = "",
) -> None:
    """Merge a flat ``{dotted key: value}`` mapping into ``tree`` (see the module doc).

    A clash with a different value already in ``tree`` goes to ``conflicts`` under
    ``prefix + key`` (its original attribute key) when a dict is given; otherwise the
    value is kept aside in the tree itself.
    """
    created: Created | None = None
    for key, value in flat.items():
        node = tree
        last = key
        if "." in key:
            parts = key.split(".")
            last = parts.pop()
            for seg in parts:
                child = node.get(seg, _MISSING)
                if type(child) is not dict:
                    child = {} if child is _MISSING else {VALUE_KEY: child}
                    node[seg] = child
                    if created is None:
                        created = []
                    created.append((node, seg, child))
                node = child
        if last not in node:
            node[last] = value
        elif not place(node, last, value):
            if conflicts is None:
                _aside(tree, key.split("."), value)
            else:
                conflicts[prefix + key] = value
    if created:
        densify(created)


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """A new nested object from a flat ``{dotted key: value}`` mapping; loses nothing."""
    tree: dict[str, Any] = {}
    merge_flat(tree, flat)
    return tree


def indexed(tree: Mapping[str, Any] | list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """Split a ``{"0": a, "1": b, "x": c}`` node into ``([a, b], {"x": c})``.

    For indexed families (``gen_ai.prompt.N.*``): numeric keys are ordered by value even
    when there are gaps (attribute limits can drop some), other keys are returned apart.
    """
    if type(tree) is list:
        return list(tree), {}
    items: list[tuple[int, Any]] = []
    extra: dict[str, Any] = {}
    for key, value in tree.items():  # type: ignore[union-attr]
        if key.isascii() and key.isdigit():
            items.append((int(key), value))
        else:
            extra[key] = value
    items.sort(key=lambda item: item[0])
    return [value for _, value in items], extra


def tree_builder(keys: Sequence[str]) -> Callable[[Sequence[Any]], dict[str, Any]] | None:
    """A function making ``unflatten(dict(zip(keys, values)))`` from ``values``, or ``None``.

    For a fixed key set (one instrumentation's unknown attributes, span after span) the
    shape of the un-flattened tree is fixed, so it is rendered once as a nested display
    expression and compiled; building the tree then costs one call instead of a loop of
    splits and lookups. Keys are embedded with ``repr``, which always yields a plain
    string literal. ``None`` when one key is a path prefix of another (a collision,
    whose outcome depends on the values): callers then use :func:`merge_flat`.
    """
    if not keys:
        return None
    paths = sorted(tuple(key.split(".")) for key in keys)
    for shorter, longer in pairwise(paths):
        if longer[:len(shorter)] == shorter:
            return None
    slots = {key: _Slot(i) for i, key in enumerate(keys)}
    source = f"lambda v: {_render(unflatten(slots))}"
    builder: Callable[[Sequence[Any]], dict[str, Any]] = eval(
        compile(source, "<apiary.dataplane.ingest.otlp tree builder>", "eval"), {"__builtins__": {}}
    )
    return builder


class _Slot:
    """A placeholder for the value at index ``i`` while a tree shape is rendered."""

    __slots__ = ("i",)

    def __init__(self, i: int) -> None:
        self.i = i


def _render(node: Any) -> str:
    if type(node) is _Slot:
        return f"v[{node.i}]"
    if type(node) is list:
        return "[" + ", ".join(_render(item) for item in node) + "]"
    if node is None:  # a gap the SDK left for a None item
        return "None"
    return "{" + ", ".join(f"{key!r}: {_render(value)}" for key, value in node.items()) + "}"
