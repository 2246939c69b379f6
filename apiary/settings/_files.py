"""Checks of settings that name files (PEM certificates and keys), run when settings load so
that a bad path fails start-up with what to fix, not the first connection."""

from __future__ import annotations

import stat
from pathlib import Path


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror or exc}; give the "
                         "path of a readable PEM file") from None


def pem_certificates(path: Path, what: str) -> Path:
    """``path`` if it is a readable PEM file holding at least one certificate."""
    if "-----BEGIN CERTIFICATE-----" not in _read(path, what):
        raise ValueError(f"the {what} {path} holds no PEM certificate ('-----BEGIN "
                         "CERTIFICATE-----')")
    return path


def private_pem_key(path: Path, what: str) -> Path:
    """``path`` if it is a readable PEM private key that neither its group nor others may
    read or write (the message says the ``chmod`` to run)."""
    text = _read(path, what)
    if "PRIVATE KEY-----" not in text:
        raise ValueError(f"the {what} {path} holds no PEM private key ('-----BEGIN ... "
                         "PRIVATE KEY-----')")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ValueError(f"the {what} {path} is open to its group or others (mode "
                         f"{mode:04o}): run `chmod 600 {path}` (it must be readable by "
                         "Apiary's user only)")
    return path
