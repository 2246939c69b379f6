"""ControlPlaneKeyAuthenticator and ChainedAuthenticator against a real HTTP control plane
that issues real ES256 tokens (conftest.py)."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator

import pytest
from _control_plane import AUDIENCE, PROJECT, ControlPlane
from _servers import free_port

from apiary.credentials import mint_api_key
from apiary.dataplane.auth import (
    ApiKeyAuthenticator,
    ChainedAuthenticator,
    ControlPlaneKeyAuthenticator,
    CredentialShape,
    JwtAuthenticator,
    Permission,
    Principal,
    StoredKey,
    control_plane_authenticator,
    credential_shape,
)
from apiary.errors import AuthenticationFailed, ConfigurationError, ControlPlaneUnavailable
from apiary.settings import ApiarySettings, load_settings


@pytest.fixture
async def keys(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> AsyncIterator[ControlPlaneKeyAuthenticator]:
    authenticator = ControlPlaneKeyAuthenticator(
        control_plane.url, audience=AUDIENCE, tokens=verifier,
        cache_max_s=60, negative_cache_s=0.3, expiry_margin_s=10,
    )
    yield authenticator
    await authenticator.aclose()


async def test_a_valid_key_is_exchanged_once_then_served_from_the_cache(
    control_plane: ControlPlane, keys: ControlPlaneKeyAuthenticator
) -> None:
    key = control_plane.add_api_key(role="member", permissions=["events:write"])
    principal = await keys.authenticate(key)
    assert principal.project_id == PROJECT
    assert principal.subject == f"key:{key[9:33]}"
    assert principal.permissions == {Permission.EVENTS_WRITE}
    for _ in range(5):
        assert await keys.authenticate(key) is principal
    assert control_plane.exchanges == 1
    assert keys.exchanges == 1


async def test_an_unknown_key_is_refused_and_briefly_refused_without_asking(
    control_plane: ControlPlane, keys: ControlPlaneKeyAuthenticator
) -> None:
    bad = "hh_ingst_" + "a" * 24 + "_" + "b" * 64
    for _ in range(3):
        with pytest.raises(AuthenticationFailed, match="not valid"):
            await keys.authenticate(bad)
    assert control_plane.exchanges == 1  # the negative cache answered twice
    await asyncio.sleep(0.35)
    with pytest.raises(AuthenticationFailed):
        await keys.authenticate(bad)
    assert control_plane.exchanges == 2


async def test_a_forbidden_key_is_refused(
    control_plane: ControlPlane, keys: ControlPlaneKeyAuthenticator
) -> None:
    control_plane.exchange_status = 403
    with pytest.raises(AuthenticationFailed, match="may not be used on this data plane"):
        await keys.authenticate(control_plane.add_api_key())


async def test_a_revoked_key_stops_working_within_the_cache_lifetime(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    keys = ControlPlaneKeyAuthenticator(
        control_plane.url, audience=AUDIENCE, tokens=verifier, cache_max_s=0.5
    )
    key = control_plane.add_api_key()
    await keys.authenticate(key)
    control_plane.revoke(key)
    await keys.authenticate(key)  # still cached: at most cache_max_s of grace
    assert control_plane.exchanges == 1
    await asyncio.sleep(0.6)
    with pytest.raises(AuthenticationFailed, match="unknown or revoked"):
        await keys.authenticate(key)
    assert control_plane.exchanges == 2
    await keys.aclose()


async def test_the_cache_never_outlives_the_token(
    control_plane: ControlPlane, keys: ControlPlaneKeyAuthenticator
) -> None:
    # Tokens valid for 5 s with a 10 s safety margin: never cached, exchanged every time.
    control_plane.token_lifetime_s = 5
    key = control_plane.add_api_key()
    await keys.authenticate(key)
    await keys.authenticate(key)
    assert control_plane.exchanges == 2


async def test_concurrent_requests_with_one_key_share_one_exchange(
    control_plane: ControlPlane, keys: ControlPlaneKeyAuthenticator
) -> None:
    control_plane.exchange_delay_s = 0.2
    key = control_plane.add_api_key()
    principals = await asyncio.gather(*(keys.authenticate(key) for _ in range(30)))
    assert {p.project_id for p in principals} == {PROJECT}
    assert control_plane.exchanges == 1


async def test_a_cancelled_waiter_does_not_cancel_the_shared_exchange(
    control_plane: ControlPlane, keys: ControlPlaneKeyAuthenticator
) -> None:
    control_plane.exchange_delay_s = 0.2
    key = control_plane.add_api_key()
    impatient = asyncio.ensure_future(keys.authenticate(key))
    patient = asyncio.ensure_future(keys.authenticate(key))
    await asyncio.sleep(0.05)
    impatient.cancel()
    assert (await patient).project_id == PROJECT
    assert impatient.cancelled()
    assert control_plane.exchanges == 1


async def test_a_jwt_goes_straight_to_the_token_verifier(
    control_plane: ControlPlane, keys: ControlPlaneKeyAuthenticator
) -> None:
    principal = await keys.authenticate(control_plane.token())
    assert principal.subject == "user:alice"
    assert control_plane.exchanges == 0


async def test_a_credential_of_no_known_shape_is_refused_without_a_request(
    control_plane: ControlPlane, keys: ControlPlaneKeyAuthenticator
) -> None:
    for junk in ("short", "has spaces in it and more", "two.segments", "x" * 300):
        with pytest.raises(AuthenticationFailed):
            await keys.authenticate(junk)
    assert control_plane.exchanges == 0


async def test_a_token_the_data_plane_cannot_verify_is_a_503_and_not_cached(
    control_plane: ControlPlane, keys: ControlPlaneKeyAuthenticator
) -> None:
    # A misconfigured control plane issuing tokens for another audience: never trusted.
    control_plane.token_audience = "dp-elsewhere"
    key = control_plane.add_api_key()
    for expected_exchanges in (1, 2):
        with pytest.raises(ControlPlaneUnavailable, match=r"cannot verify: .*another data plane"):
            await keys.authenticate(key)
        assert control_plane.exchanges == expected_exchanges


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (500, None, "answered HTTP 500"),
        (429, None, "answered HTTP 429"),
        (None, {"token_type": "Bearer"}, "without an access_token"),
        (None, {"access_token": "not-a-jwt"}, "cannot verify"),
    ],
)
async def test_control_plane_failures_are_503s(
    control_plane: ControlPlane,
    keys: ControlPlaneKeyAuthenticator,
    status: int | None,
    body: dict[str, str] | None,
    reason: str,
) -> None:
    control_plane.exchange_status = status
    control_plane.exchange_body = body
    with pytest.raises(ControlPlaneUnavailable, match=reason) as caught:
        await keys.authenticate(control_plane.add_api_key())
    assert caught.value.status == 503


async def test_an_unreachable_control_plane_is_a_503(verifier: JwtAuthenticator) -> None:
    keys = ControlPlaneKeyAuthenticator(
        f"http://127.0.0.1:{free_port()}", audience=AUDIENCE, tokens=verifier, timeout_s=2
    )
    with pytest.raises(ControlPlaneUnavailable, match="could not reach"):
        await keys.authenticate("hh_ingst_" + "a" * 24 + "_" + "b" * 64)
    await keys.aclose()


async def test_forget_drops_a_cached_key(
    control_plane: ControlPlane, keys: ControlPlaneKeyAuthenticator
) -> None:
    key = control_plane.add_api_key()
    await keys.authenticate(key)
    control_plane.revoke(key)
    keys.forget(key)
    with pytest.raises(AuthenticationFailed):
        await keys.authenticate(key)


async def test_built_from_settings_and_survives_pickling(control_plane: ControlPlane) -> None:
    settings = ApiarySettings(control_plane_url=control_plane.url, data_plane_id=AUDIENCE)
    keys = pickle.loads(pickle.dumps(control_plane_authenticator(settings)))
    principal = await keys.authenticate(control_plane.add_api_key())
    assert principal.project_id == PROJECT
    assert keys.cache_max_s == settings.auth_cache_max_s
    await keys.aclose()
    await keys.tokens.jwks.aclose()
    with pytest.raises(ConfigurationError, match="APIARY_CONTROL_PLANE_URL"):
        control_plane_authenticator(ApiarySettings())


# --- shapes and chains -----------------------------------------------------------------


def test_credential_shapes(control_plane: ControlPlane) -> None:
    assert credential_shape(control_plane.token()) is CredentialShape.JWT
    assert credential_shape(mint_api_key().value) is CredentialShape.API_KEY
    for junk in ("", "short", "a.b", "key with spaces 1234567", "é" * 20):
        assert credential_shape(junk) is CredentialShape.UNKNOWN


async def test_a_chain_tries_local_keys_then_the_control_plane(
    control_plane: ControlPlane, keys: ControlPlaneKeyAuthenticator, verifier: JwtAuthenticator
) -> None:
    local_key = mint_api_key()
    local_principal = Principal("key:local", "o", "w", "p-local", frozenset())
    local = ApiKeyAuthenticator([StoredKey(local_key.key_id, local_key.secret_hash,
                                           local_principal)])
    chain = ChainedAuthenticator([
        (CredentialShape.JWT, verifier),
        (CredentialShape.API_KEY, local),
        (CredentialShape.API_KEY, keys),
    ])
    assert await chain.authenticate(local_key.value) is local_principal
    assert control_plane.exchanges == 0
    remote = await chain.authenticate(control_plane.add_api_key())
    assert remote.project_id == PROJECT
    assert control_plane.exchanges == 1
    assert (await chain.authenticate(control_plane.token())).subject == "user:alice"
    with pytest.raises(AuthenticationFailed, match="unknown or revoked"):
        await chain.authenticate(mint_api_key().value)  # the last failure is reported
    with pytest.raises(AuthenticationFailed, match="neither an API key nor a signed token"):
        await chain.authenticate("not a credential")


async def test_a_chain_refuses_a_shape_it_has_no_route_for(
    control_plane: ControlPlane, verifier: JwtAuthenticator
) -> None:
    chain = ChainedAuthenticator([(CredentialShape.JWT, verifier)])
    with pytest.raises(AuthenticationFailed, match="does not accept API keys"):
        await chain.authenticate(mint_api_key().value)


async def test_a_chain_does_not_hide_an_unreachable_control_plane(
    verifier: JwtAuthenticator,
) -> None:
    dead = ControlPlaneKeyAuthenticator(
        f"http://127.0.0.1:{free_port()}", audience=AUDIENCE, tokens=verifier, timeout_s=2
    )
    chain = ChainedAuthenticator([
        (CredentialShape.API_KEY, ApiKeyAuthenticator([])),
        (CredentialShape.API_KEY, dead),
    ])
    with pytest.raises(ControlPlaneUnavailable):
        await chain.authenticate(mint_api_key().value)
    await dead.aclose()


def test_the_issuer_defaults_to_the_control_plane_url() -> None:
    settings = load_settings(control_plane_url="https://cp.example/")
    assert settings.trusted_issuer == "https://cp.example"
    assert load_settings(jwt_issuer="https://id.example").trusted_issuer == "https://id.example"
    with pytest.raises(ConfigurationError, match="APIARY_CONTROL_PLANE_URL"):
        load_settings(control_plane_url="cp.example")
