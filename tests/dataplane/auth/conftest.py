"""Fixtures: a real HTTP server playing the control plane (its JWKS and token exchange).

The server (uvicorn, tests/_servers.py) is started once per session; each test gets it
reset. The data-plane code under test reaches it over TCP exactly as it would reach a
control plane: nothing in httpx is replaced.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from _control_plane import AUDIENCE, ControlPlane, FakeClock
from _servers import http_server

from apiary.dataplane.auth import JWKS_PATH, JwksCache, JwtAuthenticator


@pytest.fixture(scope="session")
def _control_plane_server() -> Iterator[ControlPlane]:
    cp = ControlPlane()
    with http_server(cp.app()) as url:
        cp.url = url
        yield cp


@pytest.fixture
def control_plane(_control_plane_server: ControlPlane) -> ControlPlane:
    _control_plane_server.reset()
    return _control_plane_server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def jwks(control_plane: ControlPlane, clock: FakeClock) -> AsyncIterator[JwksCache]:
    cache = JwksCache(
        control_plane.url + JWKS_PATH, max_age_s=300, refetch_cooldown_s=30, clock=clock
    )
    yield cache
    await cache.aclose()


@pytest.fixture
def verifier(control_plane: ControlPlane, jwks: JwksCache) -> JwtAuthenticator:
    return JwtAuthenticator(jwks, issuer=control_plane.issuer, audience=AUDIENCE, leeway_s=30)
