"""The OS isolation of a metric worker: what the kernel enforces, whatever the code does.

This layer is the sandbox's guarantee (RestrictedPython is a second, best-effort layer
in front of it). A worker is forked from the zygote, which already lives in a network
namespace of its own, and before it reads a job it applies, in this order:

1. stdio onto ``/dev/null`` and every inherited descriptor but its job socket closed;
2. rlimits: ``RLIMIT_CPU`` (per evaluation, see :func:`start_job_cpu_limit`),
   ``RLIMIT_AS`` (its preloaded size + the memory limit), ``RLIMIT_NOFILE``,
   ``RLIMIT_NPROC`` 0, ``RLIMIT_FSIZE`` 0, ``RLIMIT_CORE`` 0, ``RLIMIT_MEMLOCK`` 0;
   SIGXFSZ ignored so a write fails with EFBIG instead of killing silently;
3. when started as root: no supplementary groups, then uid and gid ``sandbox_uid``
   (nobody), so hard limits can no longer be raised and RLIMIT_NPROC applies; if the
   Python install is not readable by that uid (pyenv under /root), uid 0 stays but every
   capability goes, irreversibly (securebits), with the same two effects;
4. ``PR_SET_PDEATHSIG`` (dies with the zygote), ``PR_SET_DUMPABLE`` 0 (no ptrace or
   ``/proc/<pid>/mem`` by another process of the same uid), ``PR_SET_NO_NEW_PRIVS``;
5. Landlock (``apiary.dataplane.evaluation.sandbox.landlock``): read-only access to the Python
   install and system libraries, nothing else; no TCP; no signals out of its domain;
6. seccomp (``apiary.dataplane.evaluation.sandbox.seccomp``): no sockets, processes, threads, exec,
   ptrace, namespaces, io_uring;
7. Python's ``socket`` constructors replaced by ones that refuse (a clearer error only:
   the network namespace and seccomp are what count).

The network namespace holds nothing but a loopback interface that is down: connecting to
127.0.0.1 fails with ENETUNREACH even before seccomp refuses the socket.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import pwd
import resource
import signal
import socket
import stat
import sysconfig
from dataclasses import asdict, dataclass, field
from typing import Any

from apiary.dataplane.evaluation.sandbox import landlock, seccomp
from apiary.dataplane.evaluation.sandbox.limits import SandboxLimits

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_NO_NEW_PRIVS = 39
_PR_SET_SECUREBITS = 28
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)

# System library directories a lazily imported extension module may still load from.
_SYSTEM_LIBRARY_DIRS = ("/usr/lib", "/lib", "/usr/lib64", "/lib64", "/usr/share/zoneinfo")


@dataclass
class IsolationReport:
    """Which OS layers a worker applied; the pool refuses workers missing a required one."""

    network: str | None = None       # "netns", "userns+netns", or None
    uid: int = -1
    gid: int = -1
    capabilities: int = -1           # effective capability mask; 0 = none
    no_new_privs: bool = False
    landlock_abi: int = 0
    seccomp: bool = False
    rlimits: dict[str, list[int]] = field(default_factory=dict)

    def missing(self) -> list[str]:
        gaps = []
        if self.network is None:
            gaps.append("network namespace")
        if not self.seccomp:
            gaps.append("seccomp filter")
        if self.landlock_abi == 0:
            gaps.append("Landlock file-system restriction")
        if self.uid == 0 and self.capabilities != 0:
            gaps.append("unprivileged uid or dropped capabilities")
        return gaps

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def prepare() -> None:
    """Work every worker would repeat, done once in the zygote and inherited by fork."""
    read_paths()
    _python_readable_by_others()


def enter_network_namespace() -> str:
    """Move this process into a new, empty network namespace (the zygote, once).

    As root a plain ``CLONE_NEWNET``; otherwise inside a new user namespace, where the
    kernel allows it to unprivileged users. Raises OSError when neither is permitted.
    """
    if _libc.unshare(_CLONE_NEWNET) == 0:
        return "netns"
    first = ctypes.get_errno()
    if _libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0:
        return "userns+netns"
    err = ctypes.get_errno()
    raise OSError(err, "cannot create a network namespace: "
                  f"{os.strerror(first)} / with a user namespace: {os.strerror(err)}")


@functools.cache
def read_paths() -> tuple[str, ...]:
    """What a worker may read: the standard library, site-packages, system libraries."""
    paths = sysconfig.get_paths()
    wanted = [paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    return tuple(sorted({os.path.realpath(p) for p in (*wanted, *_SYSTEM_LIBRARY_DIRS)}))


def address_space_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_job_cpu_limit(limits: SandboxLimits) -> None:
    """Give the next evaluation ``cpu_s`` CPU seconds from now (soft RLIMIT_CPU).

    RLIMIT_CPU counts the process's whole life, so the soft limit moves with each job;
    the hard limit, fixed at start, bounds what code that gets hold of setrlimit could
    raise it to. Past the soft limit the kernel sends SIGXCPU, whose default action ends
    the worker (it has no handler).
    """
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(cpu_used()) + limits.cpu_s
    resource.setrlimit(resource.RLIMIT_CPU, (min(soft, hard), hard))


def _close_inherited(keep_fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        if devnull != target:
            os.dup2(devnull, target)
    if devnull > 2:
        os.close(devnull)
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, 1 << 20)


def _set_rlimits(limits: SandboxLimits) -> dict[str, list[int]]:
    hard_cpu = limits.cpu_budget_s + limits.cpu_s
    wanted = {
        "RLIMIT_CORE": (0, 0),
        "RLIMIT_FSIZE": (0, 0),
        "RLIMIT_NPROC": (0, 0),
        "RLIMIT_MEMLOCK": (0, 0),
        "RLIMIT_NOFILE": (limits.max_open_files, limits.max_open_files),
        "RLIMIT_CPU": (math.ceil(cpu_used()) + limits.cpu_s, hard_cpu),
        "RLIMIT_AS": (address_space_bytes() + limits.memory_bytes,) * 2,
    }
    applied = {}
    for name, value in wanted.items():
        resource.setrlimit(getattr(resource, name), value)
        applied[name] = list(resource.getrlimit(getattr(resource, name)))
    return applied


def _reachable_by_others(path: str) -> bool:
    """Whether a user with no relation to the owners can read ``path`` (every ancestor
    searchable, the path itself readable)."""
    current = "/"
    for part in [p for p in path.split("/") if p]:
        if not os.stat(current).st_mode & stat.S_IXOTH:
            return False
        current = os.path.join(current, part)
    mode = os.stat(current).st_mode
    return bool(mode & stat.S_IROTH) and bool(mode & stat.S_IXOTH or not stat.S_ISDIR(mode))


@functools.cache
def _python_readable_by_others() -> bool:
    paths = sysconfig.get_paths()
    try:
        return all(_reachable_by_others(os.path.realpath(paths[key]))
                   for key in ("stdlib", "purelib"))
    except OSError:
        return False


def _drop_privileges(uid: int) -> None:
    try:
        gid = pwd.getpwuid(uid).pw_gid
    except KeyError:
        gid = uid
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32))


def _drop_capabilities() -> None:
    """Stay uid 0 but without any capability, for good (the fallback when the Python
    install is not readable by ``sandbox_uid``, e.g. pyenv under /root).

    Without capabilities, root's remaining powers are those of a file owner, which
    Landlock confines to reading the Python install; RLIMIT_NPROC and hard limits bind
    (the kernel exempts only CAP_SYS_RESOURCE/CAP_SYS_ADMIN holders); the securebits make
    the kernel never hand capabilities back to uid 0.
    """
    securebits = 0x2F  # NOROOT, NOROOT_LOCKED, NO_SETUID_FIXUP(+_LOCKED), KEEP_CAPS_LOCKED
    _prctl(_PR_SET_SECUREBITS, securebits)
    for cap in range(64):
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # past the last capability this kernel knows
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def _capabilities() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return -1


class _RefusedSocket(OSError):
    pass


def _refuse(*args: object, **kwargs: object) -> Any:
    raise _RefusedSocket(1, "network access is not available in metrics")


def _patch_python_sockets() -> None:
    # Defense in depth with a readable message; the kernel refuses these anyway.
    socket.socket.__init__ = _refuse  # type: ignore[method-assign]
    for name in ("create_connection", "create_server", "socketpair", "fromfd"):
        setattr(socket, name, _refuse)


def isolate_worker(limits: SandboxLimits, keep_fd: int, network: str | None,
                   zygote_pid: int) -> IsolationReport:
    """Apply every OS layer to this freshly forked worker; irreversible.

    Raises OSError when a layer the kernel supports cannot be applied; a layer the
    kernel lacks (no Landlock, no seccomp on this architecture) is reported as missing.
    """
    report = IsolationReport(network=network)
    _close_inherited(keep_fd)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGXCPU, signal.SIG_DFL)
    report.rlimits = _set_rlimits(limits)
    # Opened while the paths are still reachable; enforced after privileges are gone.
    ruleset = landlock.Ruleset(read_paths())
    if os.geteuid() == 0:
        if _python_readable_by_others():
            _drop_privileges(limits.sandbox_uid)
        else:
            _drop_capabilities()
    report.uid, report.gid = os.getuid(), os.getgid()
    report.capabilities = _capabilities()
    # Set after the uid change, which clears it; then make sure the zygote still lives.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote_pid:
        os._exit(1)
    _prctl(_PR_SET_DUMPABLE, 0)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    report.no_new_privs = _libc.prctl(_PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1
    report.landlock_abi = ruleset.enforce()
    report.seccomp = seccomp.install()
    _patch_python_sockets()
    return report
