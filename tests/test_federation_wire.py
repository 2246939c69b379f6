"""The federation stream's generated code: built from proto/ by scripts/build_proto.py
(idempotent, --if-stale), imported through apiary.federation_wire, and a clear
ConfigurationError when it was never generated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "apiary" / "_generated" / "federation" / "v1"


def _build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "build_proto.py"), *args],
                          capture_output=True, text=True, timeout=120, check=True)


def test_build_is_idempotent_and_skips_when_fresh() -> None:
    _build()
    files = sorted(GENERATED.glob("*.py"))
    assert [f.name for f in files] == ["__init__.py", "federation_pb2.py",
                                       "federation_pb2_grpc.py"]
    before = {f: f.read_bytes() for f in files}
    again = _build()
    assert "0 file(s) written" in again.stderr
    assert {f: f.read_bytes() for f in files} == before
    stamped = {f: f.stat().st_mtime_ns for f in files}
    fresh = _build("--if-stale")
    assert fresh.stderr == ""  # nothing to do: no protoc run, nothing touched
    assert {f: f.stat().st_mtime_ns for f in files} == stamped
    # The generated modules import each other under apiary._generated.
    assert "from apiary._generated.federation.v1 import federation_pb2" in (
        GENERATED / "federation_pb2_grpc.py").read_text()


def test_the_wire_round_trips_a_message() -> None:
    from apiary.federation_wire import pb2, pb2_grpc

    message = pb2().ControlPlaneMessage(change=pb2().ConfigChange(
        version=7, kind="metric", project_id="p", payload=b"{}"))
    parsed = pb2().ControlPlaneMessage.FromString(message.SerializeToString())
    assert (parsed.change.version, parsed.change.kind) == (7, "metric")
    assert hasattr(pb2_grpc(), "FederationStub")


def test_missing_generated_code_says_how_to_fix_it() -> None:
    # A Python whose import of the generated package fails (as in a checkout where
    # `make proto` never ran).
    code = (
        "import sys; sys.modules['apiary._generated.federation.v1'] = None\n"
        "from apiary.errors import ConfigurationError\n"
        "from apiary import federation_wire\n"
        "try:\n    federation_wire.pb2()\nexcept ConfigurationError as exc:\n"
        "    print('refused:', exc.message)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True, cwd=ROOT)
    assert "refused:" in result.stdout
    assert "make proto" in result.stdout


def test_a_wheel_carries_the_generated_code(tmp_path: Path) -> None:
    """setup.py generates apiary/_generated before setuptools collects the packages, so a
    wheel built from a tree without it (a fresh checkout) carries it."""
    import shutil
    import zipfile

    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    for name in ("scripts", "proto"):
        shutil.copytree(ROOT / name, tree / name)
    shutil.copytree(ROOT / "apiary", tree / "apiary", ignore=shutil.ignore_patterns(
        "_generated", "__pycache__", "*.so", "webui"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                   cwd=tree, capture_output=True, text=True, timeout=600, check=True)
    (wheel,) = (tmp_path / "dist").glob("apiary-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"apiary/_generated/federation/v1/federation_pb2.py",
            "apiary/_generated/federation/v1/federation_pb2_grpc.py",
            "apiary/_generated/federation/v1/__init__.py"} <= names
