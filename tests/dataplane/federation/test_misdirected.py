"""A federated data plane's token exchange (apiary.dataplane.auth._exchange with an
identity): the identity JWT travels in ``Apiary-Data-Plane``, and the control plane's 421
``wrong_data_plane`` reaches the caller over OTLP/HTTP, REST (421 JSON) and OTLP/gRPC
(FAILED_PRECONDITION), cached no longer than the negative cache.

The control plane is a real local HTTP server answering its token endpoint; the data plane's
app and gRPC receiver run in-process over real NATS and chDB."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import jwt
import pytest
from _servers import http_server
from google.rpc import status_pb2
from nats.js.errors import NotFoundError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apiary._private.files import write_private
from apiary.credentials import mint_api_key
from apiary.dataplane.app import create_app
from apiary.dataplane.auth import control_plane_authenticator
from apiary.dataplane.federation.identity import (
    KEY_FILE,
    DataPlaneIdentity,
    generate_key,
    public_jwk,
)
from apiary.dataplane.ingest.otlp_grpc import EXPORT_METHOD, OtlpGrpcServer
from apiary.dataplane.replica.context import DataPlaneContext
from apiary.dataplane.replica.federation_state import KEY_REVOKED_SUBJECT
from apiary.errors import MisdirectedRequest
from apiary.queue import NatsServer, connect, ensure_topology
from apiary.settings import ApiarySettings
from apiary.store import DirectStoreClient, EventStore

DP_ID = "dp-00000000000000aa"
ISSUER = "https://cp.misdirect.test/cp"
RIGHT_URL = "https://dp-eu.example.test"
MESSAGE = f"project p-a is served by data plane eu-1 at {RIGHT_URL}; send its data there"


class TokenEndpoint:
    """The control plane's ``POST /v1/auth/token``: every key is another plane's (421)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str | None, dict[str, object]]] = []

    async def token(self, request: Request) -> Response:
        body = json.loads(await request.body() or b"{}")
        with self.lock:
            self.requests.append((request.headers.get("apiary-data-plane"), body))
        return JSONResponse({"message": MESSAGE, "errorCode": "wrong_data_plane",
                             "data_plane_url": RIGHT_URL}, 421)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/cp/v1/auth/token", self.token, methods=["POST"])])


@dataclass
class Plane:
    cp: TokenEndpoint
    identity: DataPlaneIdentity
    http: httpx.AsyncClient
    grpc_endpoint: str
    context: DataPlaneContext


@pytest.fixture(scope="module")
def token_endpoint() -> Iterator[tuple[TokenEndpoint, str]]:
    cp = TokenEndpoint()
    with http_server(cp.app()) as url:
        yield cp, url + "/cp"


def _identity(data_dir: Path, cp_url: str) -> DataPlaneIdentity:
    write_private(data_dir / KEY_FILE, generate_key().private_bytes(
        *_pem_args()))
    return DataPlaneIdentity(data_plane_id=DP_ID, control_plane_url=cp_url, issuer=ISSUER,
                             federation_endpoint="127.0.0.1:1", name="test", data_dir=data_dir)


def _pem_args() -> tuple[object, ...]:
    from cryptography.hazmat.primitives import serialization

    return (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())


@pytest.fixture(scope="module")
async def plane(
    token_endpoint: tuple[TokenEndpoint, str], nats_server: NatsServer, store: EventStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Plane]:
    cp, cp_url = token_endpoint
    data_dir = tmp_path_factory.mktemp("misdirected")
    identity = _identity(data_dir, cp_url)
    settings = ApiarySettings(data_dir=data_dir, control_plane_url=cp_url, jwt_issuer=ISSUER,
                              auth_negative_cache_s=30.0)
    nc = await connect(nats_server.url, name="misdirected-setup")
    js = nc.jetstream()
    for stream in ("events", "evaluation", "notifications"):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await ensure_topology(js, settings)
    authenticator = control_plane_authenticator(
        settings, data_plane_id=identity.data_plane_id, identity=identity.mint)
    context = await DataPlaneContext.open(settings, nats_server.url, authenticator,
                                          store=DirectStoreClient(store))
    receiver = OtlpGrpcServer(context, "127.0.0.1", 0)
    port = await receiver.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context)),
                                 base_url="http://dp") as http:
        yield Plane(cp, identity, http, f"127.0.0.1:{port}", context)
    await receiver.stop(1.0)
    await context.close()
    await nc.close()


def _otlp_body() -> bytes:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    scope.spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="x",
                    start_time_unix_nano=1, end_time_unix_nano=2)
    return request.SerializeToString()


async def test_the_exchange_carries_the_identity_jwt_and_the_registered_audience(
    plane: Plane,
) -> None:
    key = mint_api_key().value
    before = len(plane.cp.requests)
    response = await plane.http.post("/v1/traces", content=_otlp_body(), headers={
        "authorization": f"Bearer {key}", "content-type": "application/x-protobuf"})
    assert response.status_code == 421
    header, body = plane.cp.requests[before]
    assert header is not None
    assert body == {"audience": DP_ID}
    verifying = jwt.PyJWK.from_dict(public_jwk(plane.identity.signing_key())).key
    claims = jwt.decode(header, verifying, algorithms=["ES256"], audience=ISSUER)
    assert claims["iss"] == claims["sub"] == DP_ID
    assert claims["exp"] - claims["iat"] <= 300


async def test_otlp_http_gets_the_421_naming_the_right_data_plane(plane: Plane) -> None:
    response = await plane.http.post("/v1/traces", content=b'{"resourceSpans": []}', headers={
        "authorization": f"Bearer {mint_api_key().value}", "content-type": "application/json"})
    assert response.status_code == 421, response.text
    body = response.json()
    assert body["errorCode"] == "wrong_data_plane"
    assert body["message"] == MESSAGE
    assert body["data_plane_url"] == RIGHT_URL
    # A protobuf exporter gets the same 421 as a google.rpc.Status (FAILED_PRECONDITION).
    response = await plane.http.post("/v1/traces", content=_otlp_body(), headers={
        "authorization": f"Bearer {mint_api_key().value}",
        "content-type": "application/x-protobuf"})
    assert response.status_code == 421
    status = status_pb2.Status.FromString(response.content)
    assert status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert status.message == MESSAGE


async def test_rest_gets_the_421_naming_the_right_data_plane(plane: Plane) -> None:
    response = await plane.http.post("/v1/events/export", json={"project": "p-a"}, headers={
        "authorization": f"Bearer {mint_api_key().value}"})
    assert response.status_code == 421, response.text
    assert response.json()["data_plane_url"] == RIGHT_URL


async def test_otlp_grpc_gets_failed_precondition_with_the_message(plane: Plane) -> None:
    async with grpc.aio.insecure_channel(plane.grpc_endpoint) as channel:
        export = channel.unary_unary(EXPORT_METHOD)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await export(_otlp_body(), metadata=(
                ("authorization", f"Bearer {mint_api_key().value}"),), timeout=10)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert RIGHT_URL in (refused.value.details() or "")
    assert "served by data plane eu-1" in (refused.value.details() or "")


async def test_the_421_is_remembered_only_for_the_negative_cache(plane: Plane) -> None:
    key = mint_api_key().value
    auth = control_plane_authenticator(
        plane.context.settings.model_copy(update={"auth_negative_cache_s": 0.5}),
        data_plane_id=DP_ID, identity=plane.identity.mint)
    before = len(plane.cp.requests)
    for _ in range(3):
        with pytest.raises(MisdirectedRequest) as refused:
            await auth.authenticate(key)
        assert refused.value.data_plane_url == RIGHT_URL
    assert len(plane.cp.requests) == before + 1  # the negative cache answered twice
    await asyncio.sleep(0.6)  # auth_negative_cache_s = 0.5
    with pytest.raises(MisdirectedRequest):
        await auth.authenticate(key)
    assert len(plane.cp.requests) == before + 2
    await auth.aclose()


async def test_a_key_revocation_notice_makes_the_replica_forget_the_key_at_once(
    plane: Plane,
) -> None:
    key = mint_api_key().value
    auth = plane.context.authenticator
    with pytest.raises(MisdirectedRequest):
        await auth.authenticate(key)
    before = len(plane.cp.requests)
    with pytest.raises(MisdirectedRequest):
        await auth.authenticate(key)
    assert len(plane.cp.requests) == before  # remembered (the negative cache is 30 s)
    notice = {"key_id": "k", "key_sha256": hashlib.sha256(key.encode()).hexdigest()}
    await plane.context.nc.publish(KEY_REVOKED_SUBJECT, json.dumps(notice).encode())

    async def asked_again() -> bool:
        with pytest.raises(MisdirectedRequest):
            await auth.authenticate(key)
        return len(plane.cp.requests) > before

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not await asked_again():
        assert loop.time() < deadline, "the replica never forgot the revoked key"
        await asyncio.sleep(0.05)
