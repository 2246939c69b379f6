"""Fixtures of the attack tests: the control plane's real fixtures (cpdb on PostgreSQL
and on SQLite, a movable clock, the ASGI test client), reused as they are.

Each attack test module adds what it attacks with (an attacker's OIDC provider, a
provider endpoint, a data plane) in fixtures of its own.
"""

from __future__ import annotations

from control.conftest import (  # noqa: F401  (fixtures are found by name)
    DATA_PLANE_ID,
    FAST_HASHER,
    ISSUER,
    FakeClock,
    client,
    clock,
    cp,
    cp_databases,
    cp_url,
    make_settings,
    settings_overrides,
)
