"""A federated data plane keeps serving keys it verified while its control plane is away
(``ControlPlaneKeyAuthenticator(stale_max_s=...)``, APIARY_AUTH_STALE_MAX_S), and never
serves one the control plane refused or revoked.

The control plane is a real HTTP server (conftest.py's app, served here on a port of its
own) that the tests stop and start again; the data plane's clock is moved by hand so that
the cache and stale caps pass without sleeping (HTTP and token expiry stay real).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn
from _control_plane import AUDIENCE, PROJECT, ControlPlane, FakeClock
from _servers import free_port

from apiary._private import metrics
from apiary.dataplane.auth import (
    ControlPlaneKeyAuthenticator,
    JwtAuthenticator,
    control_plane_authenticator,
)
from apiary.errors import (
    AuthenticationFailed,
    ConfigurationError,
    ControlPlaneUnavailable,
    MisdirectedRequest,
)
from apiary.settings import load_settings

CACHE_S = 60.0
STALE_S = 3600.0
RETRY_S = 1.0


class Restartable:
    """``control_plane``'s token endpoint served by uvicorn on one port, stopped and
    started again by the test (a control plane going away and coming back)."""

    def __init__(self, control_plane: ControlPlane) -> None:
        self.control_plane = control_plane
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        server = uvicorn.Server(uvicorn.Config(
            self.control_plane.app(), host="127.0.0.1", port=self.port, log_level="warning",
            access_log=False, lifespan="off"))
        thread = threading.Thread(target=server.run, name=f"cp-{self.port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn exited"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        self._server, self._thread = server, thread

    def stop(self) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.should_exit = True
        self._thread.join(10)
        assert not self._thread.is_alive(), "uvicorn did not stop"
        self._server = self._thread = None


@pytest.fixture
def cp(control_plane: ControlPlane) -> Iterator[Restartable]:
    served = Restartable(control_plane)
    served.start()
    yield served
    if served._server is not None:
        served.stop()


@pytest.fixture
async def keys(
    cp: Restartable, verifier: JwtAuthenticator, clock: FakeClock
) -> AsyncIterator[ControlPlaneKeyAuthenticator]:
    authenticator = ControlPlaneKeyAuthenticator(
        cp.url, audience=AUDIENCE, tokens=verifier, cache_max_s=CACHE_S,
        negative_cache_s=0.5, stale_max_s=STALE_S, stale_retry_s=RETRY_S, timeout_s=2.0,
        clock=clock)
    yield authenticator
    await authenticator.aclose()


def _stale_uses_metric() -> float:
    value = metrics.REGISTRY.get_sample_value("apiary_auth_stale_uses_total")
    return value or 0.0


async def test_a_verified_key_keeps_working_while_the_control_plane_is_down(
    cp: Restartable, keys: ControlPlaneKeyAuthenticator, clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = cp.control_plane.add_api_key()
    principal = await keys.authenticate(key)
    cp.stop()
    clock.advance(CACHE_S + 1)  # past the cache cap: it must be verified again, and cannot
    before = _stale_uses_metric()
    with caplog.at_level("WARNING", logger="apiary.dataplane.auth._exchange"):
        for _ in range(3):
            assert await keys.authenticate(key) == principal
            clock.advance(RETRY_S + 0.1)  # each one asks the control plane again
    assert principal.project_id == PROJECT
    assert keys.stale_uses == 3
    assert _stale_uses_metric() == before + 3
    digest = hashlib.sha256(key.encode()).hexdigest()
    stale_logs = [r for r in caplog.records if "verified earlier" in r.getMessage()]
    assert len(stale_logs) == 1  # once per key per minute
    assert stale_logs[0].key_sha256_prefix == digest[:12]
    assert key not in caplog.text  # never the key
    assert key[9:33] not in caplog.text


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_control_plane_answering_5xx_or_429_serves_the_key_stale(
    cp: Restartable, keys: ControlPlaneKeyAuthenticator, clock: FakeClock, status: int,
) -> None:
    key = cp.control_plane.add_api_key()
    principal = await keys.authenticate(key)
    cp.control_plane.exchange_status = status
    clock.advance(CACHE_S + 1)
    assert await keys.authenticate(key) == principal
    assert cp.control_plane.exchanges == 2  # it was asked, and failed
    assert keys.stale_uses == 1


@pytest.mark.parametrize("status", [401, 403, 421])
async def test_a_key_the_control_plane_refused_is_never_served_stale(
    cp: Restartable, keys: ControlPlaneKeyAuthenticator, clock: FakeClock, status: int,
) -> None:
    key = cp.control_plane.add_api_key()
    await keys.authenticate(key)
    cp.control_plane.exchange_status = status  # revoked, forbidden, another data plane's
    clock.advance(CACHE_S + 1)
    with pytest.raises(MisdirectedRequest if status == 421 else AuthenticationFailed):
        await keys.authenticate(key)
    cp.stop()  # and now the control plane goes away
    clock.advance(1.0)  # past the negative cache
    with pytest.raises(ControlPlaneUnavailable):
        await keys.authenticate(key)
    assert keys.stale_uses == 0


async def test_a_key_revoked_by_push_is_never_served_stale(
    cp: Restartable, keys: ControlPlaneKeyAuthenticator, clock: FakeClock,
) -> None:
    one, other = cp.control_plane.add_api_key(), cp.control_plane.add_api_key()
    await keys.authenticate(one)
    await keys.authenticate(other)
    assert keys.forget_digest(hashlib.sha256(one.encode()).digest())  # a key_revoked notice
    cp.stop()
    clock.advance(CACHE_S + 1)
    with pytest.raises(ControlPlaneUnavailable):
        await keys.authenticate(one)
    assert await keys.authenticate(other)  # the others still work
    keys.forget_all()  # a notice naming no key hash
    clock.advance(RETRY_S + 0.1)
    with pytest.raises(ControlPlaneUnavailable):
        await keys.authenticate(other)
    assert keys.stale_uses == 1


async def test_a_key_verified_longer_ago_than_the_stale_cap_gets_the_503(
    cp: Restartable, keys: ControlPlaneKeyAuthenticator, clock: FakeClock,
) -> None:
    key = cp.control_plane.add_api_key()
    await keys.authenticate(key)
    cp.stop()
    clock.advance(STALE_S - 1)
    assert await keys.authenticate(key)  # still within the cap
    clock.advance(2)
    with pytest.raises(ControlPlaneUnavailable) as raised:
        await keys.authenticate(key)
    assert raised.value.status == 503
    assert raised.value.retryable


async def test_a_key_this_replica_never_verified_gets_the_503(
    cp: Restartable, keys: ControlPlaneKeyAuthenticator, clock: FakeClock,
) -> None:
    known = cp.control_plane.add_api_key()
    await keys.authenticate(known)
    unknown = cp.control_plane.add_api_key()  # valid at the control plane
    cp.stop()
    with pytest.raises(ControlPlaneUnavailable):
        await keys.authenticate(unknown)
    clock.advance(CACHE_S + 1)
    with pytest.raises(ControlPlaneUnavailable):  # nor while others are served stale
        await keys.authenticate(unknown)
    assert keys.stale_uses == 0


async def test_with_the_control_plane_back_the_next_request_verifies_again(
    cp: Restartable, keys: ControlPlaneKeyAuthenticator, clock: FakeClock,
) -> None:
    key = cp.control_plane.add_api_key()
    await keys.authenticate(key)
    cp.stop()
    clock.advance(CACHE_S + 1)
    await keys.authenticate(key)
    asked = cp.control_plane.exchanges
    assert await keys.authenticate(key)  # within stale_retry_s: served without asking
    assert keys.stale_uses == 2
    assert cp.control_plane.exchanges == asked
    cp.start()
    clock.advance(RETRY_S + 0.1)
    await keys.authenticate(key)
    assert cp.control_plane.exchanges == asked + 1  # verified again
    assert keys.stale_uses == 2
    cp.control_plane.revoke(key)  # and a revocation now counts within the cache cap
    clock.advance(CACHE_S + 1)
    with pytest.raises(AuthenticationFailed, match="not valid"):
        await keys.authenticate(key)


async def test_stale_entries_stay_within_the_cache_bound(
    cp: Restartable, verifier: JwtAuthenticator, clock: FakeClock,
) -> None:
    keys = ControlPlaneKeyAuthenticator(
        cp.url, audience=AUDIENCE, tokens=verifier, cache_entries=2, cache_max_s=CACHE_S,
        stale_max_s=STALE_S, clock=clock)
    try:
        first, *rest = [cp.control_plane.add_api_key() for _ in range(3)]
        for key in (first, *rest):
            await keys.authenticate(key)
        cp.stop()
        clock.advance(CACHE_S + 1)
        with pytest.raises(ControlPlaneUnavailable):  # forgotten: least recently used
            await keys.authenticate(first)
        for key in rest:
            assert await keys.authenticate(key)
    finally:
        await keys.aclose()


async def test_without_a_stale_cap_the_cache_cap_ends_it(
    cp: Restartable, verifier: JwtAuthenticator, clock: FakeClock,
) -> None:
    keys = ControlPlaneKeyAuthenticator(cp.url, audience=AUDIENCE, tokens=verifier,
                                        cache_max_s=CACHE_S, stale_max_s=0, clock=clock)
    try:
        key = cp.control_plane.add_api_key()
        await keys.authenticate(key)
        cp.stop()
        clock.advance(CACHE_S + 1)
        with pytest.raises(ControlPlaneUnavailable):
            await keys.authenticate(key)
    finally:
        await keys.aclose()


def test_only_a_federated_data_plane_serves_stale_and_the_cap_is_checked(
    control_plane: ControlPlane,
) -> None:
    settings = load_settings(control_plane_url=control_plane.url)
    assert settings.auth_stale_max_s == 3600.0
    assert control_plane_authenticator(settings).stale_max_s == 0
    federated = control_plane_authenticator(settings, data_plane_id="dp-1",
                                            identity=lambda: "jwt")
    assert federated.stale_max_s == 3600.0
    off = load_settings(control_plane_url=control_plane.url, auth_stale_max_s=0)
    assert control_plane_authenticator(off, data_plane_id="dp-1",
                                       identity=lambda: "jwt").stale_max_s == 0
    with pytest.raises(ConfigurationError, match="auth_stale_max_s"):
        load_settings(auth_cache_max_s=60, auth_stale_max_s=30)
    with pytest.raises(ConfigurationError, match="stale_max_s"):
        ControlPlaneKeyAuthenticator(control_plane.url, audience=AUDIENCE,
                                     tokens=federated.tokens, cache_max_s=60, stale_max_s=30)
