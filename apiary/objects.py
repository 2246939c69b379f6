"""Object storage for what does not belong in a queue or a table: dead-lettered batches.

One interface, two drivers (docs/architecture.md, "Stores and their embedded defaults"): S3
(or any S3-compatible server) through boto3 in production, a local directory as the embedded
default. :meth:`ObjectStore.put` returns once the object is durable (S3 answered the PUT;
the local file is written to a temporary name, fsync'ed, renamed into place, and its directory
fsync'ed, so the name survives a host crash too) and raises otherwise.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from apiary._private.files import private_dir, write_private
from apiary.errors import InvalidRequest, NotFound, StoreUnavailable
from apiary.settings import ApiarySettings


class ObjectStore(Protocol):
    async def put(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key``; return a URL naming where it went."""
        ...

    async def get(self, key: str) -> bytes:
        """The object under ``key``; :class:`NotFound` if there is none."""
        ...

    async def keys(self, prefix: str) -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object under ``key``, durably once this returns (S3 answered; the
        local directory fsync'ed); an object already gone is not an error."""
        ...


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidRequest(f"invalid object key {key!r}")
    return key


def _owner_only_dir(path: Path) -> None:
    """Create ``path`` (and parents) mode 0700, or take group and other permissions away
    from it if it exists. Never adds a permission: a directory the operator made read-only
    stays read-only, and writing into it fails."""
    if not path.exists():
        private_dir(path)
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(mode & 0o700)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalObjectStore:
    """Objects as files under a directory; written atomically and fsync'ed (file, then its
    directory, and the directories created for it)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _put(self, key: str, data: bytes) -> str:
        path = self.root / _check_key(key)
        created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        # Dead letters hold whole events: owner-only, whatever the writer's umask.
        _owner_only_dir(self.root)
        _owner_only_dir(path.parent)
        write_private(path, data)  # fsyncs the file before renaming it into place
        _fsync_dir(path.parent)  # the rename itself
        for directory in created:  # each new directory's entry in its parent
            _fsync_dir(directory.parent)
        return path.as_uri()

    async def put(self, key: str, data: bytes) -> str:
        return await asyncio.to_thread(self._put, key, data)

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread((self.root / _check_key(key)).read_bytes)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("no such object", key=key) from None

    def _delete(self, key: str) -> None:
        path = self.root / _check_key(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        _fsync_dir(path.parent)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)

    async def keys(self, prefix: str) -> list[str]:
        def walk() -> list[str]:
            if not self.root.exists():
                return []
            found = [
                p.relative_to(self.root).as_posix()
                for p in self.root.rglob("*")
                if p.is_file() and not p.name.endswith(".tmp")
            ]
            return sorted(k for k in found if k.startswith(prefix))

        return await asyncio.to_thread(walk)


class S3ObjectStore:
    """Objects in an S3 bucket (AWS, MinIO, or any S3-protocol server)."""

    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._s3: Any = boto3.client("s3", endpoint_url=endpoint_url)

    def _full(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put(self, key: str, data: bytes) -> str:
        full = self._full(key)
        try:
            await asyncio.to_thread(self._s3.put_object, Bucket=self.bucket, Key=full, Body=data)
        except Exception as exc:  # botocore's errors share no useful base with the network's
            raise StoreUnavailable(f"S3 put failed: {exc}", key=full) from exc
        return f"s3://{self.bucket}/{full}"

    async def get(self, key: str) -> bytes:
        full = self._full(key)
        try:
            response = await asyncio.to_thread(
                self._s3.get_object, Bucket=self.bucket, Key=full
            )
            body: bytes = await asyncio.to_thread(response["Body"].read)
        except Exception as exc:
            if _s3_code(exc) in ("NoSuchKey", "404"):
                raise NotFound("no such object", key=full) from None
            raise StoreUnavailable(f"S3 get failed: {exc}", key=full) from exc
        return body

    async def delete(self, key: str) -> None:
        full = self._full(key)
        try:  # S3 answers a delete of a missing key with success too
            await asyncio.to_thread(self._s3.delete_object, Bucket=self.bucket, Key=full)
        except Exception as exc:
            raise StoreUnavailable(f"S3 delete failed: {exc}", key=full) from exc

    async def keys(self, prefix: str) -> list[str]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        paginator = self._s3.get_paginator("list_objects_v2")

        def listing() -> list[str]:
            out = []
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    out.append(key[len(self.prefix) + 1 :] if self.prefix else key)
            return sorted(out)

        try:
            return await asyncio.to_thread(listing)
        except Exception as exc:
            raise StoreUnavailable(f"S3 list failed: {exc}", prefix=full) from exc


def _s3_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ``ClientError`` (``NoSuchKey``, ...), else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def object_store(settings: ApiarySettings) -> ObjectStore:
    if settings.object_store_url is None:
        return LocalObjectStore(settings.data_dir / "objects")
    parsed = urlparse(settings.object_store_url)
    return S3ObjectStore(parsed.netloc, parsed.path, endpoint_url=settings.s3_endpoint_url)
