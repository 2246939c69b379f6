"""The data plane's identity (apiary.dataplane.federation.identity): key pair, registration
at a real local HTTP server playing the control plane's register endpoint, identity JWTs."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from _servers import http_server
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import ECAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from apiary.dataplane.federation import ensure_identity, load_identity, thumbprint
from apiary.dataplane.federation.identity import IDENTITY_FILE, KEY_FILE, NEXT_KEY_FILE
from apiary.errors import ConfigurationError
from apiary.settings import ApiarySettings

ISSUER = "https://cp.example.test/cp"


class Registrar:
    """The control plane's ``POST /v1/data-planes/register``, recording raw request bodies."""

    def __init__(self) -> None:
        self.url = ""
        self.lock = threading.Lock()
        self.bodies: list[bytes] = []
        self.tokens: dict[str, str] = {}  # token -> "fresh" | "used" | "expired"
        self.registered: dict[str, dict[str, Any]] = {}

    async def register(self, request: Request) -> Response:
        raw = await request.body()
        with self.lock:
            self.bodies.append(raw)
        body = json.loads(raw)
        state = self.tokens.get(body["bootstrap_token"])
        if state is None:
            return JSONResponse({"message": "unknown bootstrap token",
                                 "errorCode": "unauthenticated"}, 401)
        if state == "used":
            return JSONResponse({"message": "this bootstrap token was already used; create a new "
                                 "one with `apiary data-planes create`", "errorCode": "gone"}, 410)
        if state == "expired":
            return JSONResponse({"message": "this bootstrap token expired",
                                 "errorCode": "gone"}, 410)
        self.tokens[body["bootstrap_token"]] = "used"
        dp_id = f"dp-{len(self.registered):016x}"
        self.registered[dp_id] = body["public_jwk"]
        return JSONResponse({"data_plane_id": dp_id, "name": "eu-1", "issuer": ISSUER,
                             "jwks_url": ISSUER + "/.well-known/jwks.json",
                             "federation_endpoint": "127.0.0.1:4320",
                             "control_plane_version": "test"})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/cp/v1/data-planes/register", self.register, methods=["POST"])])


@pytest.fixture(scope="module")
def registrar() -> Iterator[Registrar]:
    r = Registrar()
    with http_server(r.app()) as url:
        r.url = url + "/cp"
        yield r


def settings_for(tmp_path: Path, registrar: Registrar, token: str | None) -> ApiarySettings:
    return ApiarySettings(data_dir=tmp_path / "data", control_plane_url=registrar.url,
                          bootstrap_token=token)


def test_registration_stores_the_key_0600_and_never_sends_the_private_key(
    tmp_path: Path, registrar: Registrar
) -> None:
    registrar.tokens["apiary_dpb_fresh1"] = "fresh"
    settings = settings_for(tmp_path, registrar, "apiary_dpb_fresh1")
    assert settings.federated
    before = len(registrar.bodies)
    identity = ensure_identity(settings)
    data = tmp_path / "data"
    for name in (IDENTITY_FILE, KEY_FILE):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    assert identity.data_plane_id in registrar.registered
    assert identity.issuer == ISSUER
    assert identity.federation_endpoint == "127.0.0.1:4320"
    # The request carried the public key only: no private scalar, no PEM.
    sent = registrar.bodies[before:]
    assert len(sent) == 1
    key = serialization.load_pem_private_key((data / KEY_FILE).read_bytes(), password=None)
    d = key.private_numbers().private_value  # type: ignore[union-attr]
    private_jwk = json.loads(ECAlgorithm.to_jwk(key, as_dict=False))  # type: ignore[arg-type]
    raw = sent[0].decode()
    assert '"d"' not in raw
    assert private_jwk["d"] not in raw
    assert "PRIVATE KEY" not in raw
    assert str(d) not in raw
    assert format(d, "x") not in raw
    assert json.loads(raw)["public_jwk"] == identity.public_jwk()


def test_a_second_start_reuses_the_identity_and_ignores_the_token(
    tmp_path: Path, registrar: Registrar
) -> None:
    registrar.tokens["apiary_dpb_fresh2"] = "fresh"
    first = ensure_identity(settings_for(tmp_path, registrar, "apiary_dpb_fresh2"))
    requests = len(registrar.bodies)
    again = ensure_identity(settings_for(tmp_path, registrar, "apiary_dpb_fresh2"))
    without_token = ensure_identity(settings_for(tmp_path, registrar, None))
    assert len(registrar.bodies) == requests  # nothing sent: the token was used once
    assert again.data_plane_id == first.data_plane_id == without_token.data_plane_id
    assert again.public_jwk() == first.public_jwk()
    assert ApiarySettings(data_dir=tmp_path / "data").federated


@pytest.mark.parametrize(("state", "match"), [
    (None, "does not know this bootstrap token"),
    ("used", "already used"),
    ("expired", "expired"),
])
def test_a_refused_token_is_a_clear_configuration_error(
    tmp_path: Path, registrar: Registrar, state: str | None, match: str
) -> None:
    token = f"apiary_dpb_{state or 'unknown'}"
    if state is not None:
        registrar.tokens[token] = state
    with pytest.raises(ConfigurationError, match=match) as refused:
        ensure_identity(settings_for(tmp_path, registrar, token))
    assert "apiary data-planes create" in refused.value.message
    assert load_identity(tmp_path / "data") is None  # no identity without an acceptance


def test_no_identity_and_no_token_is_a_configuration_error(tmp_path: Path) -> None:
    settings = ApiarySettings(data_dir=tmp_path, control_plane_url="http://127.0.0.1:9")
    assert not settings.federated
    with pytest.raises(ConfigurationError, match="APIARY_BOOTSTRAP_TOKEN"):
        ensure_identity(settings)


def test_identity_jwts_are_es256_short_lived_with_thumbprint_kid_and_fresh_jti(
    tmp_path: Path, registrar: Registrar
) -> None:
    registrar.tokens["apiary_dpb_fresh3"] = "fresh"
    identity = ensure_identity(settings_for(tmp_path, registrar, "apiary_dpb_fresh3"))
    public = ECAlgorithm.from_jwk(json.dumps(registrar.registered[identity.data_plane_id]))
    tokens = [identity.mint(), identity.mint()]
    claims = [jwt.decode(t, public, algorithms=["ES256"], audience=ISSUER)  # type: ignore[arg-type]
              for t in tokens]
    for token, c in zip(tokens, claims, strict=True):
        assert jwt.get_unverified_header(token)["kid"] == thumbprint(identity.public_jwk())
        assert c["iss"] == c["sub"] == identity.data_plane_id
        assert 0 < c["exp"] - c["iat"] <= 300
    assert claims[0]["jti"] != claims[1]["jti"]
    with pytest.raises(ValueError, match="lifetime_s"):
        identity.mint(lifetime_s=301)


def test_rfc7638_thumbprint_matches_the_rfc_example_shape() -> None:
    # RFC 7638 section 3.1's method on an EC key: members in lexicographic order, no spaces.
    jwk = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
           "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
    import base64
    import hashlib
    canonical = ('{"crv":"P-256","kty":"EC","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",'
                 '"y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}')
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=")
    assert thumbprint(jwk) == expected.decode()


def test_rotation_keeps_the_old_key_until_committed(
    tmp_path: Path, registrar: Registrar
) -> None:
    registrar.tokens["apiary_dpb_fresh4"] = "fresh"
    identity = ensure_identity(settings_for(tmp_path, registrar, "apiary_dpb_fresh4"))
    old = identity.public_jwk()
    new = identity.begin_rotation()
    assert new != old
    assert identity.public_jwk() == old
    assert stat.S_IMODE((tmp_path / "data" / NEXT_KEY_FILE).stat().st_mode) == 0o600
    assert identity.begin_rotation() == new  # a retried command reuses the pending key
    other = load_identity(tmp_path / "data")
    assert other is not None
    assert other.public_jwk() == old
    identity.commit_rotation()
    assert identity.public_jwk() == new
    assert other.public_jwk() == new  # another process sees the new key file
    assert not (tmp_path / "data" / NEXT_KEY_FILE).exists()
    assert identity.rotation_unconfirmed
    identity.restore_previous()  # the control plane refused the new key
    assert identity.public_jwk() == old
    assert not identity.rotation_unconfirmed
    identity.begin_rotation()
    identity.abort_rotation()
    assert identity.public_jwk() == old
    newer = identity.begin_rotation()
    identity.commit_rotation()
    identity.forget_previous()  # confirmed: the old key is gone for good
    assert identity.public_jwk() == newer
    assert not identity.rotation_unconfirmed
    for name in ("dp-identity.prev.key", NEXT_KEY_FILE):
        assert not (tmp_path / "data" / name).exists()


def test_a_pickled_federated_authenticator_carries_no_private_key(
    tmp_path: Path, registrar: Registrar
) -> None:
    import pickle

    from apiary.dataplane.auth import control_plane_authenticator

    registrar.tokens["apiary_dpb_fresh5"] = "fresh"
    settings = settings_for(tmp_path, registrar, "apiary_dpb_fresh5")
    identity = ensure_identity(settings)
    identity.mint()  # the key is loaded in this process
    authenticator = control_plane_authenticator(
        settings, data_plane_id=identity.data_plane_id, identity=identity.mint,
        issuer=identity.issuer)
    raw = pickle.dumps(authenticator)  # what Ray ships to every replica
    assert b"PRIVATE KEY" not in raw
    assert (tmp_path / "data" / KEY_FILE).read_bytes() not in raw
    replica = pickle.loads(raw)
    assert replica.audience == identity.data_plane_id
    claims = jwt.decode(replica.identity(), options={"verify_signature": False})
    assert claims["iss"] == identity.data_plane_id  # signs with the key file, re-read
