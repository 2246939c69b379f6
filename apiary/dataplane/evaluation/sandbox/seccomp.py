"""seccomp: the kernel refuses a worker the system calls that leave the sandbox.

A classic BPF filter (x86-64), installed last by every worker and irreversible: creating
or connecting any socket (including Unix sockets, which a network namespace does not
cover), starting a process or thread, executing a program, tracing, reading or signalling
other processes, changing namespaces or mounts, io_uring (which would bypass this filter),
eBPF, perf, keyrings, kernel modules. Refused calls fail with EPERM; a call made through
another ABI (32-bit ``int 0x80``, x32) kills the process, because the numbers above would
not match it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000

_BPF_LD_W_ABS = 0x20    # BPF_LD | BPF_W | BPF_ABS
_BPF_JEQ_K = 0x15       # BPF_JMP | BPF_JEQ | BPF_K
_BPF_JGE_K = 0x35       # BPF_JMP | BPF_JGE | BPF_K
_BPF_RET_K = 0x06       # BPF_RET | BPF_K
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_RET_ALLOW = 0x7FFF0000
_OFFSET_NR = 0
_OFFSET_ARCH = 4

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2

# x86-64 numbers (arch/x86/entry/syscalls/syscall_64.tbl).
DENIED_X86_64: dict[str, int] = {
    "socket": 41, "connect": 42, "accept": 43, "bind": 49, "listen": 50, "socketpair": 53,
    "accept4": 288,
    "clone": 56, "fork": 57, "vfork": 58, "clone3": 435, "execve": 59, "execveat": 322,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_open": 434,
    "pidfd_getfd": 438, "kcmp": 312,
    "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "pivot_root": 155,
    "chroot": 161, "open_by_handle_at": 304, "name_to_handle_at": 303,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "personality": 135,
    "add_key": 248, "request_key": 249, "keyctl": 250,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
    "memfd_create": 319, "acct": 163, "swapon": 167, "swapoff": 168, "reboot": 169,
    "quotactl": 179,
    # Signals to other processes (a worker may still run as uid 0 without capabilities,
    # and then shares a uid with Apiary). The kernel's own SIGXCPU is unaffected.
    "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129,
    "rt_tgsigqueueinfo": 297, "pidfd_send_signal": 424,
}


class _SockFilter(ctypes.Structure):
    _fields_ = (("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32))


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


def supported() -> bool:
    return platform.machine() == "x86_64"


def _program(denied: list[int]) -> list[tuple[int, int, int, int]]:
    n = len(denied)
    prog = [
        (_BPF_LD_W_ABS, 0, 0, _OFFSET_ARCH),
        (_BPF_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        (_BPF_RET_K, 0, 0, _RET_KILL_PROCESS),
        (_BPF_LD_W_ABS, 0, 0, _OFFSET_NR),
        (_BPF_JGE_K, 0, 1, _X32_SYSCALL_BIT),
        (_BPF_RET_K, 0, 0, _RET_KILL_PROCESS),
    ]
    # Each comparison jumps to the EPERM return, which sits after the ALLOW one.
    prog += [(_BPF_JEQ_K, n - i, 0, nr) for i, nr in enumerate(denied)]
    prog += [(_BPF_RET_K, 0, 0, _RET_ALLOW), (_BPF_RET_K, 0, 0, _RET_ERRNO | errno.EPERM)]
    return prog


def install() -> bool:
    """Install the filter on this (single-threaded) process; False if unsupported here."""
    if not supported():
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    instructions = _program(sorted(set(DENIED_X86_64.values())))
    array = (_SockFilter * len(instructions))(*(_SockFilter(*i) for i in instructions))
    fprog = _SockFprog(len(instructions), array)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(NO_NEW_PRIVS): {os.strerror(err)}")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(SET_SECCOMP): {os.strerror(err)}")
    return True
