"""The OS layer on its own: what the kernel refuses an isolated worker, with no
RestrictedPython in the way. A probe process does what an escaped metric would do with
the raw interpreter (``_socket``, ``os.fork``, ``open``), once before and once after
the isolation that every worker applies (``oslimits.isolate_worker``)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apiary.dataplane.evaluation.sandbox import oslimits

ROOT = str(Path(oslimits.__file__).resolve().parents[4])

PROBE = r"""
import errno, json, os, resource, socket, sys
sys.path.append(sys.argv[1])
port = int(sys.argv[2])
from apiary.dataplane.evaluation.sandbox import oslimits
from apiary.dataplane.evaluation.sandbox.limits import SandboxLimits
if sys.argv[3] == "as_nobody":
    # As on a machine whose Python install is world-readable: the worker becomes nobody.
    oslimits._python_readable_by_others = lambda: True

def attempt(action):
    try:
        value = action()
        return "ok" if value is None else value
    except BaseException as exc:
        return f"{type(exc).__name__}:{getattr(exc, 'errno', '')}"

def connect():
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
    finally:
        s.close()

out = {"before_connect": attempt(connect)}
network = oslimits.enter_network_namespace()
out["network"] = network
out["netns_connect"] = attempt(connect)
mine, theirs = socket.socketpair()
pid = os.fork()
if pid == 0:
    mine.close()
    limits = SandboxLimits(memory_mb=64, max_open_files=16)
    report = oslimits.isolate_worker(limits, theirs.fileno(), network, os.getppid())
    import _socket, threading
    r = {"report": report.to_wire()}
    r["tcp_socket"] = attempt(lambda: _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM))
    r["unix_socket"] = attempt(lambda: _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM))
    r["python_socket"] = attempt(lambda: socket.socket())
    r["read_passwd"] = attempt(lambda: open("/etc/passwd").read(1))
    r["read_stdlib"] = attempt(lambda: len(open(os.__file__).read(10)))
    r["write_tmp"] = attempt(lambda: open("/tmp/apiary-sandbox-probe", "w").close())
    r["list_root"] = attempt(lambda: os.listdir("/"))
    r["fork"] = attempt(os.fork)
    r["thread"] = attempt(lambda: threading.Thread(target=print).start())
    r["exec"] = attempt(lambda: os.execv("/bin/true", ["true"]))
    r["setuid_root"] = attempt(lambda: os.setuid(0))
    r["raise_as_limit"] = attempt(lambda: resource.setrlimit(
        resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)))
    r["raise_nofile"] = attempt(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096)))
    r["signal_parent"] = attempt(lambda: os.kill(os.getppid(), 0))
    r["allocate_128mb"] = attempt(lambda: len(bytearray(128 * 1024 * 1024)))
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    r["unshare"] = attempt(lambda: [libc.unshare(0x40000000), ctypes.get_errno()])
    theirs.sendall(json.dumps(r).encode())
    os._exit(0)
theirs.close()
data = b""
while chunk := mine.recv(65536):
    data += chunk
_, status = os.waitpid(pid, 0)
out["child"] = json.loads(data)
out["child_status"] = status
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts anything: reachable from the host."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


@pytest.fixture(scope="module", params=["natural", "as_nobody"])
def probe(request: pytest.FixtureRequest, listener: int) -> dict[str, object]:
    """The probe's findings; "natural" lets the worker choose how to shed root (here,
    with Python under /root, by dropping every capability), "as_nobody" takes the path of
    a world-readable install (uid and gid 65534)."""
    done = subprocess.run([sys.executable, "-I", "-c", PROBE, ROOT, str(listener),
                           request.param], capture_output=True, text=True, timeout=120,
                          cwd="/", check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    result["mode"] = request.param
    return result


def _child(probe: dict[str, object]) -> dict[str, Any]:
    child = probe["child"]
    assert isinstance(child, dict)
    return child


def test_network_namespace_cuts_loopback(probe: dict[str, object]) -> None:
    """The same connect to 127.0.0.1 succeeds outside and fails inside the namespace."""
    assert probe["before_connect"] == "ok"
    assert probe["network"] == "netns"
    assert probe["netns_connect"] == "OSError:101"  # ENETUNREACH


def test_report_of_an_isolated_worker(probe: dict[str, object]) -> None:
    report = _child(probe)["report"]
    if probe["mode"] == "as_nobody":
        assert (report["uid"], report["gid"]) == (65534, 65534)
    else:
        assert report["uid"] == 65534 or report["capabilities"] == 0
    assert report["no_new_privs"] is True
    assert report["seccomp"] is True
    assert report["landlock_abi"] >= 1
    assert report["rlimits"]["RLIMIT_NPROC"] == [0, 0]
    assert report["rlimits"]["RLIMIT_FSIZE"] == [0, 0]
    assert report["rlimits"]["RLIMIT_NOFILE"] == [16, 16]
    assert probe["child_status"] == 0


def test_no_sockets_of_any_family(probe: dict[str, object]) -> None:
    """seccomp refuses socket() itself: TCP, and Unix sockets a netns would not cover."""
    child = _child(probe)
    assert child["tcp_socket"] == "PermissionError:1"
    assert child["unix_socket"] == "PermissionError:1"
    assert child["python_socket"].startswith("_RefusedSocket")


def test_files_beyond_the_python_install_are_refused(probe: dict[str, object]) -> None:
    child = _child(probe)
    assert child["read_passwd"] == "PermissionError:13"  # Landlock
    assert child["write_tmp"] == "PermissionError:13"
    assert child["list_root"] == "PermissionError:13"
    if probe["mode"] == "natural":
        assert child["read_stdlib"] == 10  # what workers need still works


def test_no_processes_threads_or_exec(probe: dict[str, object]) -> None:
    child = _child(probe)
    assert child["fork"] == "PermissionError:1"
    assert child["thread"].startswith("RuntimeError")  # can't start new thread
    assert child["exec"] == "PermissionError:1"
    assert child["unshare"] == [-1, 1]  # EPERM


def test_limits_and_privileges_cannot_be_undone(probe: dict[str, object]) -> None:
    child = _child(probe)
    if probe["mode"] == "as_nobody":
        assert child["setuid_root"] == "PermissionError:1"
    assert child["raise_as_limit"].startswith("ValueError")  # above the hard limit
    assert child["raise_nofile"].startswith("ValueError")
    assert child["signal_parent"] == "PermissionError:1"
    assert child["allocate_128mb"] == "MemoryError:"  # RLIMIT_AS: preloaded + 64 MiB
