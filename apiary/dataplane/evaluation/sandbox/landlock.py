"""Landlock: the kernel refuses a worker every file access but reading the Python install.

Linux ≥ 5.13 (ABI 1+). A worker restricts itself (irreversibly, inherited by anything
it could start) so that it may read files and list directories only beneath the paths
it is given (the standard library, site-packages, system libraries) and do nothing else
with the file system: no writes, no creation, no truncation, no reading ``/etc/passwd``,
the data directory or anyone's keys. From ABI 4 it may not bind or connect TCP sockets
either; from ABI 6 it may not signal processes outside its own domain (its siblings, the
zygote, Apiary) nor reach abstract Unix sockets.
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Iterable

_SYS_CREATE_RULESET = 444  # the same number on every architecture
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

_FS_EXECUTE = 1 << 0
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_ALL_V1 = (1 << 13) - 1          # EXECUTE .. MAKE_SYM
_FS_REFER = 1 << 13                 # ABI 2
_FS_TRUNCATE = 1 << 14              # ABI 3
_FS_IOCTL_DEV = 1 << 15             # ABI 5
_NET_BIND_TCP = 1 << 0              # ABI 4
_NET_CONNECT_TCP = 1 << 1
_SCOPE_ABSTRACT_UNIX = 1 << 0       # ABI 6
_SCOPE_SIGNAL = 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = (("handled_access_fs", ctypes.c_uint64),
                ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64))


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def abi_version() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is unavailable."""
    version = int(_libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                                ctypes.c_uint32(_CREATE_RULESET_VERSION)))
    return max(version, 0)


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"landlock {what}: {os.strerror(errno)}")
    return result


class Ruleset:
    """A ruleset built while the process may still open the allowed paths (before it
    drops privileges); :meth:`enforce` applies it once ``no_new_privs`` is set."""

    def __init__(self, read_paths: Iterable[str]) -> None:
        self.abi = abi_version()
        self.fd = -1
        if self.abi == 0:
            return
        handled_fs = _FS_ALL_V1
        if self.abi >= 2:
            handled_fs |= _FS_REFER
        if self.abi >= 3:
            handled_fs |= _FS_TRUNCATE
        if self.abi >= 5:
            handled_fs |= _FS_IOCTL_DEV
        attr = _RulesetAttr(handled_access_fs=handled_fs)
        size = 8
        if self.abi >= 4:
            attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP
            size = 16
        if self.abi >= 6:
            attr.scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL
            size = 24
        self.fd = _check(int(_libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr),
                                           ctypes.c_size_t(size), ctypes.c_uint32(0))),
                         "create_ruleset")
        for path in read_paths:
            self._allow_read(path)

    def _allow_read(self, path: str) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return  # a path this machine does not have
        try:
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            access = _FS_READ_FILE | (_FS_READ_DIR if is_dir else 0)
            rule = _PathBeneathAttr(allowed_access=access, parent_fd=fd)
            _check(int(_libc.syscall(_SYS_ADD_RULE, ctypes.c_int(self.fd),
                                     ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule),
                                     ctypes.c_uint32(0))), f"add_rule {path}")
        finally:
            os.close(fd)

    def enforce(self) -> int:
        """Restrict this process (needs ``no_new_privs``); the ABI applied, 0 if none."""
        if self.fd < 0:
            return 0
        try:
            _check(int(_libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(self.fd),
                                     ctypes.c_uint32(0))), "restrict_self")
        finally:
            os.close(self.fd)
            self.fd = -1
        return self.abi
