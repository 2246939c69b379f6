"""Files in the data directory: owner-only, whatever the umask of whoever started Apiary.

The data directory holds every secret of an embedded installation (cpdb and dpdb SQLite
files, chDB parts, the JetStream store, dead letters, the NATS token, the envelope keys,
``connection.json``). Its guarantees:

- the directory is mode 0700 and everything Apiary writes in it is 0600 (directories
  0700): nothing is group- or world-readable;
- processes that write there (``apiary up``, the nats-server it starts, a local Ray and its
  workers, the chDB owner) run with umask :data:`PRIVATE_UMASK`, so files created by code
  Apiary does not control (SQLite's WAL, chDB parts, JetStream blocks) are private too;
- a data directory left with looser modes (by an older Apiary, a ``cp -r``, an archive)
  is tightened when the installation starts (:func:`tighten_tree`), and the start-up log
  says how many paths it changed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

#: The umask of every process that writes to the data directory: no group or other bits.
PRIVATE_UMASK = 0o077
#: Permission bits that must never be set on anything under the data directory.
_LOOSE = stat.S_IRWXG | stat.S_IRWXO


def restrict_umask() -> int:
    """Set the process umask to :data:`PRIVATE_UMASK`; returns the previous umask.

    Process-wide: child processes (nats-server, a locally started Ray and its workers)
    inherit it.
    """
    return os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents mode 0700 (``Path.mkdir`` would give new
    parents the umask's mode), and make ``path`` itself 0700 if it existed looser."""
    missing = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty if it does not exist, mode 0600; tighten it if it does.

    Used before a library opens the file itself (SQLite), so that the file, and the
    journal and WAL files SQLite gives the main file's mode, are owner-only from the start.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & _LOOSE:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def write_private(path: Path, data: str | bytes) -> Path:
    """Replace ``path`` atomically with ``data``, mode 0600 from the moment it exists."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # a leftover tmp file keeps its old mode under O_CREAT
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def tighten_tree(root: Path, only: Iterable[str] | None = None) -> list[Path]:
    """Remove group and other permissions from ``root`` and everything below it; with
    ``only`` (glob patterns relative to ``root``), from ``root`` itself and the entries
    matching them (directories with everything below), leaving anything else alone.

    Symbolic links are neither followed nor changed (their own mode means nothing on
    Linux, and following one could chmod a file outside the data directory). Returns the
    paths whose mode changed.
    """
    changed: list[Path] = []

    def tighten(path: Path) -> None:
        try:
            st = path.lstat()
        except FileNotFoundError:
            return  # removed meanwhile (a server cleaning up)
        if stat.S_ISLNK(st.st_mode):
            return
        mode = stat.S_IMODE(st.st_mode)
        if mode & _LOOSE:
            path.chmod(mode & ~_LOOSE)
            changed.append(path)

    if not root.exists():
        return changed
    tighten(root)
    tops = [root] if only is None else sorted(
        {match for pattern in only for match in root.glob(pattern)})
    for top in tops:
        if top != root:
            tighten(top)
        if top.is_symlink() or not top.is_dir():
            continue
        for directory, subdirs, files in os.walk(top, followlinks=False):
            base = Path(directory)
            for name in subdirs + files:
                tighten(base / name)
    return changed


def loose_paths(root: Path) -> list[Path]:
    """Paths under ``root`` (itself included) that a group or others may access; symlinks
    are not followed. What :func:`tighten_tree` would change, without changing it."""
    found: list[Path] = []
    if not root.exists():
        return found
    candidates = [root]
    for directory, subdirs, files in os.walk(root, followlinks=False):
        candidates.extend(Path(directory) / name for name in subdirs + files)
    for path in candidates:
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & _LOOSE:
            found.append(path)
    return found
