"""Compile Apiary's ingest hot path with mypyc, in place (``make compile``).

Usage: ``.venv/bin/python scripts/compile.py [--if-stale | --clean]``

Compiles the modules listed under ``[tool.apiary.compile] modules`` in ``pyproject.toml``
into C extensions beside their sources, then writes ``apiary/_compiled.json``: the hash of
every compiled source and of every ``apiary`` module they import, which
``apiary._private.compiled.verify`` checks whenever ``apiary`` is imported, so an edited
source never runs as its stale compiled self. ``--clean`` deletes the extensions and the
manifest (everything then runs from source); ``--if-stale`` builds only when the
compiled modules are missing or no longer match their sources (what ``make`` runs).

Without a C compiler (or mypyc), or when the build fails, it says so, leaves nothing
compiled and exits 0: Apiary runs from source, slower. (``make test`` would notice:
``tests/test_compiled.py`` expects the compiled form wherever there is a compiler.)
``bench/ingest_path.py`` shows the difference.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import json
import shutil
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "apiary"
MANIFEST = PACKAGE_DIR / "_compiled.json"
# mypyc's runtime library for the group; inside the package so that it moves with it.
GROUP = "apiary._hot_path"


def _modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["apiary"]["compile"]["modules"])


def _source(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def _imported_sources(path: Path) -> set[Path]:
    """The ``apiary`` modules (and packages) that ``path`` imports, as source files."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name.split(".")[0] != "apiary":
                continue
            base = ROOT.joinpath(*name.split("."))
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file():
                    found.add(candidate)
    return found


def _up_to_date(modules: list[str]) -> bool:
    """Whether every listed module is compiled and matches its sources (the import check)."""
    # Loaded by path: importing the apiary package runs the check itself, and raises.
    spec = importlib.util.spec_from_file_location(
        "_apiary_compiled", PACKAGE_DIR / "_private" / "compiled.py")
    assert spec is not None
    assert spec.loader is not None
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    try:
        in_use = check.verify(PACKAGE_DIR)
    except ImportError:
        return False
    return set(in_use) == {*modules, f"{GROUP}__mypyc"}


def clean(quiet: bool = False) -> int:
    removed = 0
    for path in PACKAGE_DIR.rglob("*.so"):
        path.unlink()
        removed += 1
    MANIFEST.unlink(missing_ok=True)
    shutil.rmtree(ROOT / "build" / "mypyc", ignore_errors=True)
    if not quiet:
        print(f"compile: removed {removed} compiled modules; apiary runs from source")
    return 0


def _compiler() -> str | None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc)


def build(if_stale: bool = False) -> int:
    modules = _modules()
    if if_stale and _up_to_date(modules):
        print(f"compile: {len(modules)} compiled modules are up to date")
        return 0
    if _compiler() is None:
        print("compile: no C compiler found; apiary runs from source (slower ingestion)")
        return 0
    try:
        from mypyc.build import mypycify
        from setuptools import Distribution
    except ImportError as exc:
        print(f"compile: mypyc is not installed ({exc}); apiary runs from source")
        return 0
    clean(quiet=True)
    sources = [_source(m) for m in modules]
    depends = set(sources)
    for path in sources:
        depends |= _imported_sources(path)
    # Hashed before compiling: a source edited during the build must read as stale.
    # The same digest as apiary._private.compiled.source_digest; importing apiary here
    # would refuse to load while old extensions are stale.
    digests = {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted(depends)}
    started = time.monotonic()
    print(f"compile: {len(modules)} modules with mypyc (about a minute) ...", flush=True)
    try:
        extensions = mypycify([str(p.relative_to(ROOT)) for p in sources], opt_level="3",
                              group_name=GROUP, target_dir=str(ROOT / "build" / "mypyc"))
        distribution = Distribution({"name": "apiary-hot-path", "ext_modules": extensions})
        distribution.verbose = False  # one line per gcc call otherwise
        command = distribution.get_command_obj("build_ext")
        command.inplace = True
        command.build_temp = str(ROOT / "build" / "mypyc" / "temp")
        distribution.run_command("build_ext")
    except (Exception, SystemExit) as exc:  # setuptools exits on compiler errors
        clean(quiet=True)
        print(f"compile: failed ({type(exc).__name__}: {exc}); apiary runs from source "
              "(slower ingestion)", flush=True)
        return 0
    compiled = sorted([*modules, f"{GROUP}__mypyc"])
    MANIFEST.write_text(json.dumps({"modules": compiled, "sources": digests}, indent=1) + "\n")
    print(f"compile: {len(modules)} modules compiled in {time.monotonic() - started:.0f} s; "
          f"manifest {MANIFEST.relative_to(ROOT)} covers {len(depends)} sources", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/compile.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--clean", action="store_true",
                      help="delete the compiled modules and run from source")
    mode.add_argument("--if-stale", action="store_true",
                      help="build only if the compiled modules are missing or stale")
    args = parser.parse_args(argv)
    return clean() if args.clean else build(if_stale=args.if_stale)


if __name__ == "__main__":
    sys.exit(main())
