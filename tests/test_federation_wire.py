"""The federation stream's generated code: built from proto/ by scripts/build_proto.py
(idempotent, --if-stale), imported through apiary.federation_wire, and a clear
ConfigurationError when it was never generated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

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


def test_alert_activity_and_preview_round_trip_with_stable_field_numbers() -> None:
    """The alert messages (issue 16) travel both ways, and every field keeps its number:
    the new ones were added after the existing ones, so a peer of the previous version
    reads a message without them unchanged and skips the ones it does not know."""
    from apiary.federation_wire import pb2

    wire = pb2()
    report = wire.DataPlaneMessage(alert_activity=wire.AlertActivityReport(
        event_id="transition.a.1.warning", payload=b'{"kind":"transition"}'))
    parsed = wire.DataPlaneMessage.FromString(report.SerializeToString())
    assert parsed.WhichOneof("body") == "alert_activity"
    assert (parsed.alert_activity.event_id, parsed.alert_activity.payload) == (
        "transition.a.1.warning", b'{"kind":"transition"}')
    ack = wire.ControlPlaneMessage.FromString(wire.ControlPlaneMessage(
        alert_activity_ack=wire.AlertActivityAck(event_id="e1")).SerializeToString())
    assert (ack.WhichOneof("body"), ack.alert_activity_ack.event_id) == (
        "alert_activity_ack", "e1")
    command = wire.ControlPlaneMessage.FromString(wire.ControlPlaneMessage(
        command=wire.Command(command_id="c1", preview=wire.AlertPreview(
            project_id="p", alert_id="a", from_unix_s=1_700_000_000,
            to_unix_s=1_700_086_400))).SerializeToString())
    assert command.command.WhichOneof("body") == "preview"
    assert (command.command.preview.project_id, command.command.preview.alert_id,
            command.command.preview.from_unix_s, command.command.preview.to_unix_s) == (
        "p", "a", 1_700_000_000, 1_700_086_400)
    result = wire.DataPlaneMessage.FromString(wire.DataPlaneMessage(
        command_result=wire.CommandResult(command_id="c1", ok=True,
                                          payload=b'{"series":[]}')).SerializeToString())
    assert result.command_result.payload == b'{"series":[]}'

    def numbers(message: Any) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}

    assert numbers(wire.DataPlaneMessage) == {
        "hello": 1, "ack": 2, "health": 3, "command_result": 4, "alert_activity": 5}
    assert numbers(wire.ControlPlaneMessage) == {
        "welcome": 1, "change": 2, "command": 3, "alert_activity_ack": 4}
    assert numbers(wire.Command) == {
        "command_id": 1, "drain": 2, "rotate_key": 3, "revoke": 4, "preview": 5}
    assert numbers(wire.CommandResult) == {
        "command_id": 1, "ok": 2, "error": 3, "public_jwk": 4, "payload": 5}
    # A message of the previous version (no new field) reads the same.
    old = wire.CommandResult(command_id="c0", ok=False, error="x").SerializeToString()
    assert wire.CommandResult.FromString(old).payload == b""


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
