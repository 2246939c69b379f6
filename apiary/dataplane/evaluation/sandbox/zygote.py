"""The zygote: a preloaded template process that forks metric workers on request.

Started by a :class:`~apiary.dataplane.evaluation.sandbox.pool.SandboxPool` as ``python -I -c ...``
with an empty environment (no Apiary secrets ever enter its memory, so no worker inherits any),
it imports every allowed library once (~2 s for numpy, pandas, scikit-learn), moves into
a new network namespace, and then forks a worker in milliseconds whenever the pool asks.
Workers share the preloaded pages copy-on-write.

It stays single-threaded (forking a multi-threaded process is unsafe): the thread pools
of OpenBLAS, OpenMP and Arrow are sized to one by its environment, and it checks.

Channels: a control socket (fork requests carrying the worker's socket; answers
carrying a pidfd) and its stdout (JSON lines: ``ready`` once, then the exit status of
every worker). It exits, killing its workers, when the control socket closes.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import sys
import time
from typing import Any

# Set before numpy/pandas/sklearn load their native thread pools.
ENVIRONMENT = {
    "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1",
    # pandas' pyarrow: system allocator, no jemalloc background thread.
    "ARROW_DEFAULT_MEMORY_POOL": "system", "JE_ARROW_MALLOC_CONF": "background_thread:false",
    "TZ": "UTC", "LANG": "C.UTF-8", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin",
}


def _emit(message: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()
    except OSError:
        pass  # the pool is gone; nobody to tell


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


class Zygote:
    def __init__(self, control: socket.socket, network: str | None) -> None:
        self.control = control
        self.network = network
        self.children: dict[int, int] = {}  # pidfd -> pid
        self.selector = selectors.DefaultSelector()
        self.selector.register(control, selectors.EVENT_READ)

    def fork_worker(self, request: dict[str, Any], channel_fd: int) -> None:
        from apiary.dataplane.evaluation.sandbox import worker

        pid = os.fork()
        if pid == 0:  # the worker
            try:
                worker.main(channel_fd, request["limits"], self.network, os.getppid())
            finally:
                os._exit(70)
        os.close(channel_fd)
        # Opened before the child is reaped (only this process reaps it), so the pidfd is
        # the child's and not a process that reused its pid.
        pidfd = os.pidfd_open(pid)
        socket.send_fds(self.control, [json.dumps({"pid": pid}).encode()], [pidfd])
        self.children[pidfd] = pid
        self.selector.register(pidfd, selectors.EVENT_READ)

    def reap(self, pidfd: int) -> None:
        pid = self.children.pop(pidfd)
        self.selector.unregister(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        _emit({"event": "exit", "pid": pid, "signal": sig, "code": code})

    def serve(self) -> None:
        while True:
            for key, _ in self.selector.select():
                if key.fileobj is self.control:
                    try:
                        message, fds, _, _ = socket.recv_fds(self.control, 65536, 1)
                    except ConnectionError:
                        return  # the pool went away
                    if not message:
                        return
                    if len(fds) != 1:
                        for fd in fds:
                            os.close(fd)
                        continue
                    self.fork_worker(json.loads(message), fds[0])
                else:
                    assert isinstance(key.fileobj, int)
                    self.reap(key.fileobj)

    def shutdown(self) -> None:
        for pidfd in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        for pidfd in list(self.children):
            self.reap(pidfd)


def main(control_fd: int) -> None:
    """Entry point (argv: the control descriptor). Imports and preloads, then serves."""
    started = time.perf_counter()
    from apiary.dataplane.evaluation.sandbox import allowlist, oslimits

    allowlist.preload()
    oslimits.prepare()
    preload_s = time.perf_counter() - started
    control = socket.socket(fileno=control_fd)
    network: str | None
    network_error = None
    try:
        network = oslimits.enter_network_namespace()
    except OSError as exc:
        # Workers will report no network isolation; the pool refuses them unless it was
        # told to accept degraded isolation.
        network, network_error = None, str(exc)
    threads = _threads()
    if threads != 1:
        _emit({"event": "failed", "error": f"zygote has {threads} threads after preloading; "
               "forking it would be unsafe"})
        return
    _emit({"event": "ready", "pid": os.getpid(), "network": network,
           "network_error": network_error,
           "preload_s": round(preload_s, 3),
           "address_space": oslimits.address_space_bytes()})
    zygote = Zygote(control, network)
    try:
        zygote.serve()
    finally:
        zygote.shutdown()


# The pool starts ``python -I -c BOOTSTRAP <apiary root> <control fd>``: -I keeps the
# working directory, the caller's script directory and PYTHON* variables out of the
# import path (a stray ``attr.py`` in /tmp must not shadow a library); the interpreter's
# own site-packages provide the libraries, and the directory holding the running
# ``apiary`` package is appended in case Apiary is not installed there.
BOOTSTRAP = (
    "import sys; sys.path.append(sys.argv[1]); "
    "from apiary.dataplane.evaluation.sandbox.zygote import main; main(int(sys.argv[2]))"
)
