"""The object store's local driver (apiary/objects.py): durable when ``put`` returns, and
never loosening a directory the operator restricted."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from _read_only_dirs import read_only

from apiary.objects import LocalObjectStore


async def test_local_put_fsyncs_the_file_and_every_directory_it_touched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[tuple[int, int]] = []  # (device, inode) of each fsync'ed descriptor
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        info = os.fstat(fd)
        synced.append((info.st_dev, info.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    store = LocalObjectStore(tmp_path / "objects")
    where = await store.put("dlq/events/2026/01/02/000000000001.json", b"{}")

    path = tmp_path / "objects/dlq/events/2026/01/02/000000000001.json"
    assert where == path.as_uri()
    assert path.read_bytes() == b"{}"

    def ident(p: Path) -> tuple[int, int]:
        info = p.stat()
        return info.st_dev, info.st_ino

    # The file (its data), its directory (the rename), and each directory made for it
    # (their entries in their parents).
    assert ident(path) in synced
    for directory in (path.parent, *list(path.parents)[:6]):
        assert ident(directory) in synced, directory


async def test_local_put_into_a_read_only_store_fails_and_leaves_it_read_only(
        tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = LocalObjectStore(root)
    with read_only(root):
        mode = stat.S_IMODE(root.stat().st_mode)
        with pytest.raises(PermissionError, match=r"not permitted|denied"):
            await store.put("dlq/events/x.json", b"{}")
        assert stat.S_IMODE(root.stat().st_mode) == mode  # not loosened to write anyway
    assert await store.keys("dlq/") == []
    await store.put("dlq/events/x.json", b"{}")
    assert await store.keys("dlq/") == ["dlq/events/x.json"]


async def test_local_put_takes_group_and_other_permissions_away(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    await LocalObjectStore(root).put("a/b.json", b"{}")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "a/b.json").stat().st_mode) == 0o600
