"""JwtAuthenticator and JwksCache against a real HTTP control plane (conftest.py).

One test per attack of the issue: each builds the hostile token by hand and checks both
that it is refused and that it is refused for the right reason (the message).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import pickle
import time

import pytest
from _control_plane import AUDIENCE, PROJECT, WORKSPACE, ControlPlane, FakeClock, SigningKey, b64url
from _servers import free_port, http_server
from cryptography.hazmat.primitives import serialization

from apiary.dataplane.auth import JWKS_PATH, JwksCache, JwtAuthenticator, Permission, parse_jwks
from apiary.errors import AuthenticationFailed, ControlPlaneUnavailable, PermissionDenied


def _segments(token: str) -> tuple[str, str, str]:
    header, payload, signature = token.split(".")
    return header, payload, signature


def _encode(obj: dict[str, object]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


async def _refused(verifier: JwtAuthenticator, token: str, reason: str) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as caught:
        await verifier.authenticate(token)
    assert reason in caught.value.message, caught.value.message
    assert caught.value.status == 401
    return caught.value


# --- accepted --------------------------------------------------------------------------


async def test_a_valid_token_maps_its_claims_to_a_principal(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    principal = await verifier.authenticate(control_plane.token(role="viewer"))
    assert principal.subject == "user:alice"
    assert (principal.org_id, principal.workspace_id, principal.project_id) == (
        "org-1", WORKSPACE, PROJECT,
    )
    assert principal.role == "viewer"
    # "members:manage" is a control-plane permission unknown here: it grants nothing.
    assert principal.permissions == {Permission.EVENTS_WRITE, Permission.EVENTS_READ}
    principal.require(Permission.EVENTS_WRITE)
    with pytest.raises(PermissionDenied):
        principal.require(Permission.DATASETS_WRITE)


async def test_workspace_permissions_map_and_unknown_strings_grant_nothing(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    # A control plane newer than this data plane may send permissions it does not know
    # (and a management string must never mean anything here): they are ignored.
    principal = await verifier.authenticate(control_plane.token(
        permissions=["proxy:use", "proxy:manage", "keys:manage", "root:everything"],
        workspace_permissions=["proxy:manage", "members:manage", "future:thing"]))
    assert principal.permissions == {Permission.PROXY_USE, Permission.PROXY_MANAGE}
    assert principal.workspace_permissions == {Permission.PROXY_MANAGE}
    # Absent (an older control plane): nothing on the workspace.
    assert (await verifier.authenticate(control_plane.token())).workspace_permissions == set()
    await _refused(verifier, control_plane.token(workspace_permissions="proxy:manage"),
                   "'workspace_permissions' must be a list of strings")


async def test_a_workspace_token_reads_but_cannot_write_events(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    principal = await verifier.authenticate(control_plane.token(project_id=None))
    assert principal.project_id == ""
    assert principal.workspace_scoped
    principal.require(Permission.EVENTS_READ)
    with pytest.raises(PermissionDenied, match="workspace-scoped"):
        principal.require(Permission.EVENTS_WRITE)


async def test_a_verified_token_is_remembered_but_never_past_its_expiry(
    control_plane: ControlPlane, jwks: JwksCache
) -> None:
    strict = JwtAuthenticator(jwks, issuer=control_plane.issuer, audience=AUDIENCE, leeway_s=0)
    token = control_plane.token(exp=int(time.time()) + 2)
    first = await strict.verify(token)
    assert await strict.verify(token) is first  # the cache, not a second verification
    await asyncio.sleep(first.expires_at - time.time() + 0.1)
    await _refused(strict, token, "has expired")


# --- the attacks -----------------------------------------------------------------------


async def test_alg_none_is_refused(control_plane: ControlPlane, verifier: JwtAuthenticator) -> None:
    header = _encode({"alg": "none", "typ": "JWT", "kid": control_plane.signer.kid})
    token = f"{header}.{_encode(control_plane.claims())}."
    await _refused(verifier, token, "algorithm 'none' is not accepted")


async def test_hs256_signed_with_the_public_key_is_refused(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    # Key confusion: a verifier that took alg from the token would check this HMAC with
    # the (public) verification key as secret, and accept it.
    public_pem = control_plane.signer.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _encode({"alg": "HS256", "typ": "JWT", "kid": control_plane.signer.kid})
    signing_input = f"{header}.{_encode(control_plane.claims())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    await _refused(verifier, f"{signing_input}.{b64url(mac)}", "algorithm 'HS256'")


async def test_the_all_zero_psychic_signature_is_refused(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    genuine = control_plane.token()
    header, payload, _ = _segments(genuine)
    # CVE-2022-21449: r = s = 0 passed a broken ECDSA verifier for any message and key.
    await _refused(verifier, f"{header}.{payload}.{b64url(bytes(64))}", "signature is not valid")
    assert (await verifier.authenticate(genuine)).project_id == PROJECT  # control


async def test_an_expired_token_is_refused(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    now = int(time.time())
    # 60 s past expiry: beyond the 30 s leeway.
    token = control_plane.token(iat=now - 400, nbf=now - 400, exp=now - 60)
    await _refused(verifier, token, "has expired")


async def test_a_not_yet_valid_token_is_refused(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    now = int(time.time())
    await _refused(verifier, control_plane.token(nbf=now + 120), "not valid yet")


async def test_a_token_for_another_data_plane_is_refused(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    await _refused(verifier, control_plane.token(aud="dp-other"), "another data plane")
    # A list naming this data plane among others is not accepted either (strict aud).
    await _refused(verifier, control_plane.token(aud=[AUDIENCE, "x"]), "another data plane")


async def test_a_token_from_another_issuer_is_refused(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    await _refused(verifier, control_plane.token(iss="https://evil.example"), "(iss)")


async def test_an_unknown_kid_is_refused_after_one_refetch(
    control_plane: ControlPlane, verifier: JwtAuthenticator, jwks: JwksCache
) -> None:
    await verifier.authenticate(control_plane.token())
    assert control_plane.jwks_fetches == 1
    stranger = SigningKey()
    await _refused(verifier, stranger.sign(control_plane.claims()), "not one the control plane")
    assert control_plane.jwks_fetches == 2  # it looked again before refusing


async def test_a_tampered_payload_is_refused(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    header, _, signature = _segments(control_plane.token())
    forged = _encode(control_plane.claims(project_id="proj-of-someone-else"))
    await _refused(verifier, f"{header}.{forged}.{signature}", "signature is not valid")


async def test_a_token_signed_by_a_key_not_in_the_jwks_is_refused(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    # The attacker names a published kid but signs with their own key.
    stranger = SigningKey()
    token = stranger.sign(control_plane.claims(), kid=control_plane.signer.kid)
    await _refused(verifier, token, "signature is not valid")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("garbage", "malformed"),
        ("aGVhZGVy.cGF5bG9hZA", "malformed"),  # two segments
        ("a.b.c.d", "malformed"),
        ("e30.e30.e30=", "malformed"),  # padding is not base64url in JWS
        ("bm90IGpzb24.e30.AAAA", "header is not base64url-encoded JSON"),
        ("x" * 9000 + ".e30.e30", "malformed"),
    ],
)
async def test_malformed_tokens_are_refused(
    verifier: JwtAuthenticator, token: str, reason: str
) -> None:
    await _refused(verifier, token, reason)


async def test_a_token_without_a_required_claim_is_refused(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    await _refused(verifier, control_plane.token(exp=...), "required claim 'exp'")
    await _refused(verifier, control_plane.token(org_id=...), "'org_id' must be")


async def test_a_token_without_kid_is_refused(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    _header, payload, signature = _segments(control_plane.token())
    bare = _encode({"alg": "ES256", "typ": "JWT"})
    await _refused(verifier, f"{bare}.{payload}.{signature}", "names no signing key")


# --- the key set -----------------------------------------------------------------------


async def test_a_rotated_key_is_accepted_after_one_refetch(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    await verifier.authenticate(control_plane.token())
    assert control_plane.jwks_fetches == 1
    # Rotation: the control plane publishes the next key, then signs with it.
    old, new = control_plane.signer, SigningKey()
    control_plane.published = [old, new]
    control_plane.signer = new
    principal = await verifier.authenticate(control_plane.token())
    assert principal.project_id == PROJECT
    assert control_plane.jwks_fetches == 2
    # Tokens of the old key, still published, keep working without another fetch.
    await verifier.authenticate(old.sign(control_plane.claims()))
    assert control_plane.jwks_fetches == 2


async def test_refetches_for_unknown_kids_respect_the_cooldown(
    control_plane: ControlPlane, verifier: JwtAuthenticator, clock: FakeClock
) -> None:
    await verifier.authenticate(control_plane.token())
    forged = [SigningKey().sign(control_plane.claims()) for _ in range(3)]
    await _refused(verifier, forged[0], "not one the control plane")
    assert control_plane.jwks_fetches == 2
    clock.advance(29)  # within the 30 s cooldown: refused without asking again
    await _refused(verifier, forged[1], "not one the control plane")
    assert control_plane.jwks_fetches == 2
    # A key rotated in during the cooldown is found once the cooldown has passed.
    new = SigningKey()
    control_plane.published.append(new)
    with pytest.raises(AuthenticationFailed):
        await verifier.authenticate(new.sign(control_plane.claims()))
    assert control_plane.jwks_fetches == 2
    clock.advance(2)
    assert (await verifier.authenticate(new.sign(control_plane.claims()))).org_id == "org-1"
    assert control_plane.jwks_fetches == 3


async def test_concurrent_requests_with_a_new_kid_cause_one_fetch(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    await verifier.authenticate(control_plane.token())
    new = SigningKey()
    control_plane.published.append(new)
    control_plane.jwks_delay_s = 0.2  # all 50 arrive while the fetch is under way
    tokens = [new.sign(control_plane.claims()) for _ in range(50)]
    principals = await asyncio.gather(*(verifier.authenticate(t) for t in tokens))
    assert {p.project_id for p in principals} == {PROJECT}
    assert control_plane.jwks_fetches == 2


async def test_the_key_set_is_refetched_when_it_is_older_than_max_age(
    control_plane: ControlPlane, verifier: JwtAuthenticator, clock: FakeClock
) -> None:
    token = control_plane.token()
    await verifier.authenticate(token)
    clock.advance(301)
    # A token not seen before, so it is verified against the (refreshed) key set.
    await verifier.authenticate(control_plane.token())
    assert control_plane.jwks_fetches == 2
    # A key the control plane stopped publishing is no longer trusted after the refresh.
    control_plane.published = [SigningKey()]
    clock.advance(301)
    await _refused(verifier, control_plane.token(), "not one the control plane")


async def test_an_unreachable_control_plane_is_a_503_not_a_401(
    control_plane: ControlPlane,
) -> None:
    cache = JwksCache(f"http://127.0.0.1:{free_port()}{JWKS_PATH}", timeout_s=2)
    verifier = JwtAuthenticator(cache, issuer=control_plane.issuer, audience=AUDIENCE)
    with pytest.raises(ControlPlaneUnavailable) as caught:
        await verifier.authenticate(control_plane.token())
    assert caught.value.status == 503
    assert caught.value.retryable
    assert cache.fetches == 1
    # Within the cooldown, the failure is not retried on every request.
    with pytest.raises(ControlPlaneUnavailable):
        await verifier.authenticate(control_plane.token())
    assert cache.fetches == 1
    await cache.aclose()


async def test_keys_already_held_outlive_a_control_plane_outage() -> None:
    key = SigningKey()
    cp = ControlPlane()
    cp.published = [key]
    clock = FakeClock()
    with http_server(cp.app()) as url:
        cache = JwksCache(url + JWKS_PATH, max_age_s=10, refetch_cooldown_s=5, clock=clock)
        await cache.refresh()
    # The server is gone; the set is stale, the refresh fails, the held key still serves.
    clock.advance(11)
    assert await cache.key(key.kid) is not None
    assert cache.fetches == 2
    await cache.aclose()


def test_parse_jwks_keeps_only_public_es256_signing_keys() -> None:
    good, leaked = SigningKey(), SigningKey()
    private_jwk = {**leaked.jwk(), "d": b64url(b"\x01" * 32)}
    doc = {
        "keys": [
            good.jwk(),
            private_jwk,
            {**SigningKey().jwk(), "alg": "ES384"},
            {**SigningKey().jwk(), "use": "enc"},
            {"kty": "RSA", "kid": "r1", "n": "AQAB", "e": "AQAB"},
            {**SigningKey().jwk(), "kid": ""},
            "not a key",
        ]
    }
    assert set(parse_jwks(json.dumps(doc).encode())) == {good.kid}
    for bad in (b"not json", b"[]", b'{"keys": {}}'):
        with pytest.raises(ValueError, match="JWKS"):
            parse_jwks(bad)


async def test_the_authenticator_survives_pickling(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    # Ray ships the authenticator to each Serve replica by pickling it.
    copy = pickle.loads(pickle.dumps(verifier))
    assert (await copy.authenticate(control_plane.token())).project_id == PROJECT
    assert copy.jwks.fetches == 1
    await copy.jwks.aclose()
