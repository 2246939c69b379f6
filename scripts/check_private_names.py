"""Fail when a module imports another package's private (underscore) *name*.

The import contract in ``pyproject.toml`` (``lint-imports``, run by ``make lint``) keeps
private *modules* inside their package (``private_modules``); this is its counterpart for
names: ``from apiary.store._rows import _amount`` breaks both, ``from apiary.store import
_amount`` only this one. A private name belongs to the package of the module that defines
it (the package itself for its ``__init__``) and may be imported from that package and
anything below it, as private modules may. Dunder names are public.

Usage: ``python scripts/check_private_names.py [ROOT]`` (default: the ``apiary`` package
next to this script); prints each offence as ``path:line: importer -> module.name`` and
exits 1 if there is any.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _within(importer: str, package: str) -> bool:
    return importer == package or importer.startswith(package + ".")


def offences(root: Path) -> list[str]:
    """``path:line: importer -> module.name`` for every import of another package's
    private name under ``root`` (a package directory)."""
    packages = {_module_name(p, root) for p in root.rglob("__init__.py")}
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        importer = _module_name(path, root)
        own_package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.module is None:
                continue
            if node.level:  # relative: resolve against the importer's package
                base = own_package.split(".")[: len(own_package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module])
            else:
                module = node.module
            if not _within(module, root.name):
                continue
            owner = module if module in packages else module.rpartition(".")[0]
            for alias in node.names:
                if f"{module}.{alias.name}" in packages or not _private(alias.name):
                    continue
                if not _within(importer, owner):
                    found.append(f"{path}:{node.lineno}: {importer} -> {module}.{alias.name}")
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "apiary"
    found = offences(root.resolve())
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} import(s) of another package's private names "
              "(make the name public in its package, or move the code where it belongs)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
