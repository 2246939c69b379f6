"""Shared fixtures: real servers on free ports, started once per test session.

Layout: the tests of a package live in the folder that mirrors it (``tests/dataplane/events/``
tests ``apiary/dataplane/events/``, ``tests/store/`` tests ``apiary/store/``); tests of the
whole data-plane app sit in ``tests/dataplane/``. Harnesses shared across folders are
top-level modules named for what they start (``_dataplane.py``: a data plane in-process;
``_product_plane.py``: the product API's plane; ``_served_planes.py``: both planes over
HTTP; ``_servers.py``: PostgreSQL, Redis, uvicorn; ``_fake_llm_provider.py``); a folder's
own harness sits in it with a leading underscore. pytest's ``prepend`` import mode puts this
folder and each test's folder on ``sys.path``, so harnesses are imported by their basename,
which must be unique across the folders without ``__init__.py``; a test module never imports
a ``conftest`` (several share that name).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

# Ray reads its authentication mode once, when it is imported, and the clusters it starts
# inherit the environment: set it before any test module imports Ray (``apiary.cli`` sets
# the same on import, which would otherwise come after Ray in some orders of test files and
# leave the driver and the cluster it starts disagreeing: InvalidAuthToken).
os.environ.setdefault("RAY_AUTH_MODE", "token")

import pytest
from _servers import postgres_server, s3_server

# litellm fetches a price map from the network at import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# The OTLP/gRPC receiver's default port (4317) is shared by the whole host: tests that
# start a data plane leave it off unless they choose a free port themselves.
os.environ.setdefault("APIARY_OTLP_GRPC_PORT", "0")
# Likewise the control plane's federation endpoint (4320): tests that need it choose a port.
os.environ.setdefault("APIARY_FEDERATION_GRPC_PORT", "0")
# JetStream reserves every stream's byte limit against 75% of the disk free at the server's
# start; the default (8 GiB of events, 10.5 GiB in all) made CI's start-ups depend on how much
# disk its machine had left. No test holds more than a few MiB of backlog.
os.environ.setdefault("APIARY_EVENTS_STREAM_MAX_BYTES", str(1024**3))

from apiary.queue import NatsServer
from apiary.settings import ApiarySettings
from apiary.store import EmbeddedClickHouse, EventStore


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A real nats-server with JetStream (fsync always), private to the test session."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A real PostgreSQL server (tests/_servers.py), shared by the cpdb and dpdb tests; its
    URL. Each test takes a database of its own on it."""
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-protocol server (``moto_server``, tests/_servers.py) for the test session;
    its endpoint URL. Tests take a bucket of their own (``s3_bucket``)."""
    with s3_server() as url:
        yield url


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket on ``s3_endpoint``, with the AWS_* variables boto3 reads set for it."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "apiary-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "apiary-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"apiary-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def settings(tmp_path: Path) -> ApiarySettings:
    return ApiarySettings(data_dir=tmp_path)


@pytest.fixture(scope="session")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedClickHouse]:
    """The test session's chDB engine: chDB hosts one data directory per process, so every
    test shares it and stays independent through its own project id (``project``)."""
    drv = EmbeddedClickHouse(tmp_path_factory.mktemp("chdb"), database="apiary", pool_size=3)
    yield drv
    drv.close()


@pytest.fixture(scope="session")
def store(driver: EmbeddedClickHouse) -> EventStore:
    store = EventStore(driver)
    store.migrate()
    return store


@pytest.fixture
def project() -> str:
    """A project id no other test writes to."""
    return f"proj-{uuid.uuid4().hex[:12]}"
