"""The Python metric sandbox: user metric code, compiled restricted, run in isolated workers.

User Python metrics run under RestrictedPython inside a separate process with CPU, memory,
file and wall-clock limits and no network; RestrictedPython alone is not a sandbox
(docs/architecture.md, "Evaluation": metrics fail alone). Two layers, and what each
guarantees:

**The OS layer (the guarantee)** — every metric runs in a worker process forked from a
preloaded zygote and isolated before it reads its first job (``oslimits``):

=====================  ===================================================================
CPU                    RLIMIT_CPU per evaluation; the kernel ends the worker (SIGXCPU)
memory                 RLIMIT_AS = preloaded size + ``memory_mb``; allocations fail
wall clock             the parent kills the worker after ``timeout_s`` and replaces it
processes / threads    RLIMIT_NPROC 0 (as an unprivileged uid) and seccomp: no fork,
                       clone, exec
files                  Landlock: read-only beneath the Python install and system libraries;
                       RLIMIT_FSIZE 0; RLIMIT_NOFILE
privileges             as root: uid/gid nobody, or (Python install unreadable by nobody)
                       uid 0 with every capability dropped for good; no_new_privs
network                a network namespace with no interface up; seccomp: no socket() at
                       all (also Unix sockets); Landlock ABI 4+: no TCP
other processes        uid change, PR_SET_DUMPABLE 0, no_new_privs, seccomp (no ptrace,
                       process_vm_*, pidfd_getfd), Landlock ABI 6+ signal scoping
secrets                the zygote starts with an empty environment and never sees Apiary's
                       memory, so workers inherit no keys
output                 bounded by the worker and again by the parent, which reads no more
parent safety          replies are JSON lines, re-validated; nothing is unpickled
=====================  ===================================================================

**The RestrictedPython layer (best effort, defense in depth)** — ``compiler`` and
``guards``: no ``_`` names or attributes, no frame/generator internals, no
``try/except*``, no ``str.format``, imports only from an allowlist as read-only proxies
with the OS-reaching parts removed (``allowlist``), every value handed to metric code
checked against modules and builtins that reach the OS. It makes escapes hard and gives
metric authors clear errors; anything it misses stays inside the OS layer.

Public API: :class:`SandboxPool` (``await pool.run(code, event)``), :func:`compile_metric`
(validation when a metric is defined), :class:`MetricResult`, :class:`SandboxLimits`.
"""

from apiary.dataplane.evaluation.sandbox.compiler import CompiledMetric, compile_metric
from apiary.dataplane.evaluation.sandbox.limits import SandboxLimits
from apiary.dataplane.evaluation.sandbox.pool import PoolStats, SandboxPool
from apiary.dataplane.evaluation.sandbox.result import MetricResult

__all__ = [
    "CompiledMetric",
    "MetricResult",
    "PoolStats",
    "SandboxLimits",
    "SandboxPool",
    "compile_metric",
]
