"""The S3 object-store driver against a real S3-protocol server (``moto_server``, started by
the session's ``s3_endpoint`` fixture): what the dead letters rely on."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import boto3
import pytest

from apiary.errors import InvalidRequest, NotFound, StoreUnavailable
from apiary.objects import LocalObjectStore, S3ObjectStore, object_store
from apiary.settings import ApiarySettings


def _store(endpoint: str, bucket: str, prefix: str = "apiary/dp1") -> S3ObjectStore:
    return S3ObjectStore(bucket, prefix, endpoint_url=endpoint)


async def test_put_get_keys_and_delete_round_trip_under_the_prefix(
    s3_endpoint: str, s3_bucket: str
) -> None:
    store = _store(s3_endpoint, s3_bucket)
    where = await store.put("dlq/events/2026/01/02/000000000001.json", b'{"a": 1}')
    assert where == f"s3://{s3_bucket}/apiary/dp1/dlq/events/2026/01/02/000000000001.json"
    await store.put("dlq/evaluation/2026/01/02/000000000007.json", b"second")
    await store.put("other/thing", b"third")

    assert await store.get("dlq/events/2026/01/02/000000000001.json") == b'{"a": 1}'
    # Keys come back relative to the prefix, sorted, filtered by the prefix given.
    assert await store.keys("dlq/") == ["dlq/evaluation/2026/01/02/000000000007.json",
                                        "dlq/events/2026/01/02/000000000001.json"]
    assert await store.keys("dlq/events/") == ["dlq/events/2026/01/02/000000000001.json"]
    # The objects are where the URL says, in the bucket itself.
    raw = boto3.client("s3", endpoint_url=s3_endpoint).get_object(
        Bucket=s3_bucket, Key="apiary/dp1/other/thing")["Body"].read()
    assert raw == b"third"

    await store.delete("dlq/events/2026/01/02/000000000001.json")
    assert await store.keys("dlq/events/") == []
    with pytest.raises(NotFound):
        await store.get("dlq/events/2026/01/02/000000000001.json")


async def test_a_put_overwrites_and_a_missing_object_is_not_found(
    s3_endpoint: str, s3_bucket: str
) -> None:
    store = _store(s3_endpoint, s3_bucket, prefix="")
    await store.put("a/b.json", b"1")
    await store.put("a/b.json", b"2")
    assert await store.get("a/b.json") == b"2"
    assert await store.keys("a/") == ["a/b.json"]  # no prefix: keys are the bucket's own
    with pytest.raises(NotFound):
        await store.get("a/missing.json")
    await store.delete("a/missing.json")  # deleting what is gone succeeds


async def test_listing_pages_past_a_thousand_keys(s3_endpoint: str, s3_bucket: str) -> None:
    store = _store(s3_endpoint, s3_bucket)
    keys = [f"dlq/events/2026/01/02/{i:012d}.json" for i in range(1105)]
    gate = asyncio.Semaphore(16)

    async def put(key: str) -> None:
        async with gate:
            await store.put(key, b"x")

    await asyncio.gather(*(put(k) for k in keys))
    assert await store.keys("dlq/events/") == keys


async def test_keys_outside_the_store_are_refused_before_any_request(
    s3_endpoint: str, s3_bucket: str
) -> None:
    store = _store(s3_endpoint, s3_bucket)
    for bad in ("../escape", "/absolute", "a//b", "a/./b", ""):
        with pytest.raises(InvalidRequest):
            await store.put(bad, b"x")
        with pytest.raises(InvalidRequest):
            await store.delete(bad)


async def test_a_missing_bucket_is_unavailable_not_lost(s3_endpoint: str, s3_bucket: str) -> None:
    store = _store(s3_endpoint, f"{s3_bucket}-never-created")
    with pytest.raises(StoreUnavailable):
        await store.put("dlq/x.json", b"x")
    with pytest.raises(StoreUnavailable):
        await store.keys("dlq/")


async def test_an_unreachable_server_is_unavailable(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    store = _store(f"http://127.0.0.1:{port}", s3_bucket)
    with pytest.raises(StoreUnavailable):
        await store.put("dlq/x.json", b"x")
    with pytest.raises(StoreUnavailable):
        await store.get("dlq/x.json")
    with pytest.raises(StoreUnavailable):
        await store.delete("dlq/x.json")
    with pytest.raises(StoreUnavailable):
        await store.keys("dlq/")


def test_settings_choose_the_driver(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    local = object_store(ApiarySettings(data_dir=tmp_path))
    assert isinstance(local, LocalObjectStore)
    assert local.root == tmp_path / "objects"
    s3 = object_store(ApiarySettings(data_dir=tmp_path,
                                     object_store_url=f"s3://{s3_bucket}/apiary/prod/",
                                     s3_endpoint_url=s3_endpoint))
    assert isinstance(s3, S3ObjectStore)
    assert (s3.bucket, s3.prefix) == (s3_bucket, "apiary/prod")
    assert asyncio.run(s3.put("k.json", b"v")) == f"s3://{s3_bucket}/apiary/prod/k.json"
