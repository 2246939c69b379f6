"""A directory that refuses writes for a while, even to root (tests run as root in CI).

As root, permission bits do not stop a write, so the directory is made immutable
(``chattr +i``: no entry can be created, removed or renamed in it); otherwise it is made
``0500``. Either way a write into it fails with :class:`PermissionError` or ``EPERM``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

__all__ = ["make_read_only", "make_writable", "read_only"]


def make_read_only(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        path.chmod(0o500)


def make_writable(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o700)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` (created if missing) refuses writes inside the block."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    make_read_only(path)
    try:
        yield path
    finally:
        make_writable(path)
