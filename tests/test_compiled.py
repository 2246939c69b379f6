"""The compiled ingest hot path: stale extensions refuse to load; CI runs the compiled form."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

import apiary
from apiary._private import compiled

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = ".cpython-311-x86_64-linux-gnu.so"
FROM_SOURCE = os.environ.get("APIARY_FROM_SOURCE", "") not in ("", "0")


@pytest.fixture(autouse=True)
def _compiled_form(monkeypatch: pytest.MonkeyPatch) -> None:
    # `make test` also runs the suite with APIARY_FROM_SOURCE=1; these check verify itself.
    monkeypatch.delenv("APIARY_FROM_SOURCE", raising=False)


def _package(tmp_path: Path) -> Path:
    """A package ``pkg`` with module ``mod`` "compiled", importing ``pkg.dep``."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text("from pkg.dep import LIMIT\n")
    (package / "dep.py").write_text("LIMIT = 3\n")
    (package / f"mod{SUFFIX}").write_bytes(b"\x7fELF not really")
    sources = {f"pkg/{name}": hashlib.sha256((package / name).read_bytes()).hexdigest()
               for name in ("mod.py", "dep.py")}
    (package / compiled.MANIFEST_NAME).write_text(
        json.dumps({"modules": ["pkg.mod"], "sources": sources}))
    return package


def test_extensions_that_match_their_sources_are_in_use(tmp_path: Path) -> None:
    assert compiled.verify(_package(tmp_path)) == ["pkg.mod"]


def test_no_extensions_means_everything_runs_from_source(tmp_path: Path) -> None:
    package = _package(tmp_path)
    (package / f"mod{SUFFIX}").unlink()
    assert compiled.verify(package) == []


def test_an_edited_source_refuses_its_stale_extension(tmp_path: Path) -> None:
    package = _package(tmp_path)
    (package / "mod.py").write_text("from pkg.dep import LIMIT\nEDITED = True\n")
    with pytest.raises(ImportError, match=r"pkg/mod.py changed .* `make compile`"):
        compiled.verify(package)


def test_an_edited_module_it_was_compiled_against_refuses_it_too(tmp_path: Path) -> None:
    # mypyc may inline an imported module's constants: LIMIT = 4 would not be seen.
    package = _package(tmp_path)
    (package / "dep.py").write_text("LIMIT = 4\n")
    with pytest.raises(ImportError, match=r"pkg/dep.py changed"):
        compiled.verify(package)


def test_a_deleted_source_refuses_its_extension(tmp_path: Path) -> None:
    package = _package(tmp_path)
    (package / "dep.py").unlink()
    with pytest.raises(ImportError, match=r"pkg/dep.py changed"):
        compiled.verify(package)


def test_an_extension_the_manifest_does_not_list_is_refused(tmp_path: Path) -> None:
    package = _package(tmp_path)
    (package / f"dep{SUFFIX}").write_bytes(b"")
    with pytest.raises(ImportError, match=r"pkg.dep are not in .*make uncompile"):
        compiled.verify(package)


def test_extensions_without_a_manifest_are_refused(tmp_path: Path) -> None:
    package = _package(tmp_path)
    (package / compiled.MANIFEST_NAME).unlink()
    with pytest.raises(ImportError, match=r"no valid manifest"):
        compiled.verify(package)


def test_from_source_imports_the_py_although_an_extension_is_there(tmp_path: Path) -> None:
    package = _package(tmp_path)
    (package / "mod.py").write_text("FROM = 'source'\n")  # stale: would refuse otherwise
    script = (
        "import sys; from apiary._private import compiled; "
        f"sys.path.insert(0, {str(tmp_path)!r}); "
        f"assert compiled.verify(compiled.Path({str(package)!r})) == []; "
        "import pkg.mod; print(pkg.mod.FROM, pkg.mod.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        env={**os.environ, "APIARY_FROM_SOURCE": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["source", str(package / "mod.py")]


def _has_compiler() -> bool:
    return shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is not None


def test_the_hot_path_runs_compiled_where_a_compiler_exists() -> None:
    """`make test` compiles first: this checks the tests (and bench/) run what users run,
    or, under APIARY_FROM_SOURCE=1 (checked as this process started), the sources."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["apiary"][
        "compile"]["modules"]
    modules = [sys.modules.get(name) or __import__(name, fromlist=["_"]) for name in listed]
    files = {module.__name__: Path(module.__file__ or "").suffix for module in modules}
    if FROM_SOURCE or not _has_compiler():
        assert set(files.values()) == {".py"}
        assert apiary.COMPILED_MODULES == []
    else:
        assert set(files.values()) == {".so"}, f"run `make compile`: {files}"
        assert set(apiary.COMPILED_MODULES) == {*listed, "apiary._hot_path__mypyc"}


def test_the_ingest_path_bench_times_every_stage_of_the_form_in_use() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.ingest_path", "--seconds", "0.2", "--requests", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "APIARY_FROM_SOURCE": "1" if FROM_SOURCE else "0"},
    )
    assert done.returncode == 0, done.stderr
    first, *_, last = done.stdout.splitlines()
    compiled = len(apiary.COMPILED_MODULES)
    assert first.startswith(f"hot path: compiled ({compiled} modules)" if compiled
                            else "hot path: from source")
    figures = dict(part.rsplit(" ", 1) for part in
                   last.split("(", 1)[1].rstrip(")").split(", "))
    assert set(figures) == {"decode+map", "enrich", "rows", "message"}
    assert all(float(us) > 0 for us in figures.values())
