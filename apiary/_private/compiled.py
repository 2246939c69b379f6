"""Compiled hot-path modules: which exist, and whether they still match their sources.

``make compile`` (``scripts/compile.py``) compiles the ingest hot path (the modules listed
under ``[tool.apiary.compile]`` in ``pyproject.toml``: OTLP decoding and mapping, Arrow
rows, enrichment) with mypyc into C extensions beside their sources. Python imports an
extension before a ``.py`` of the same name, so an edited source would silently go on
running its old compiled self. To rule that out, the build writes a manifest
(``apiary/_compiled.json``) with a hash of every source it compiled and of every
``apiary`` module those import (mypyc may inline their constants); :func:`verify`, run
when ``apiary`` is imported, refuses to start when any of them changed, or when an
extension module exists that the manifest does not list.

Without a C compiler nothing is compiled and everything runs from source, more slowly.
``APIARY_FROM_SOURCE=1`` in the environment runs from source although the extensions are
there (``make test`` runs the mapping tests that way too, so both forms stay tested);
child processes, Ray workers included, inherit it.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PACKAGE_DIR = Path(__file__).resolve().parent.parent
MANIFEST_NAME = "_compiled.json"
_FIX = ("rebuild them with `make compile`, or delete them with `make uncompile` to run "
        "from source")


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def extension_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """The compiled extension files inside the package, by dotted module name."""
    found: dict[str, Path] = {}
    for path in package_dir.rglob("*.so"):
        relative = path.relative_to(package_dir.parent)
        stem = relative.name.split(".", 1)[0]
        found[".".join((*relative.parent.parts, stem))] = path
    return found


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the listed modules' ``.py`` sources ahead of their compiled extensions."""

    def __init__(self, sources: dict[str, Path]) -> None:
        self._sources = sources

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        source = self._sources.get(fullname)
        return None if source is None else importlib.util.spec_from_file_location(
            fullname, source)


def verify(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """The compiled modules in use, after checking that each matches its sources.

    Raises :class:`ImportError` naming the first module whose source (or a source it was
    compiled against) changed since it was compiled, and how to fix it. With
    ``APIARY_FROM_SOURCE=1`` it checks nothing and makes the compiled modules import
    from their sources.
    """
    extensions = extension_modules(package_dir)
    if not extensions:
        return []
    if os.environ.get("APIARY_FROM_SOURCE", "") not in ("", "0"):
        root = package_dir.parent
        found = {name: root.joinpath(*name.split(".")).with_suffix(".py")
                 for name in extensions}
        sys.meta_path.insert(0, _SourceFirst(
            {name: path for name, path in found.items() if path.is_file()}))
        return []
    manifest_path = package_dir / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text())
        modules: list[str] = list(manifest["modules"])
        sources: dict[str, str] = dict(manifest["sources"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImportError(
            f"apiary has compiled modules ({', '.join(sorted(extensions))}) but no valid "
            f"manifest at {manifest_path} ({exc}): {_FIX}"
        ) from None
    unlisted = sorted(set(extensions) - set(modules))
    if unlisted:
        raise ImportError(
            f"compiled modules {', '.join(unlisted)} are not in {manifest_path}: {_FIX}"
        )
    root = package_dir.parent
    for relative, digest in sources.items():
        path = root / relative
        try:
            current = source_digest(path)
        except OSError:
            current = ""
        if current != digest:
            raise ImportError(
                f"{relative} changed after apiary's hot path was compiled, so the compiled "
                f"modules would run the old code: {_FIX}"
            )
    return sorted(extensions)
