"""The control plane's shared state: settings, cpdb, the envelope key, the clock.

One :class:`ControlPlane` per process (a Serve replica, the admin CLI, a test). Operations
are plain functions taking it and a database session; they raise :mod:`apiary.errors`.

Its collaborators (signing keys, the key-usage recorder, the OIDC client, the throttle)
are built from settings and primitives and never import this module, so operations
(:mod:`apiary.control.identity`, :mod:`apiary.control.apikeys`, ...) depend on it and it
depends on none of them: there is no import cycle through the control plane's state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import httpx
from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from apiary._private.files import private_dir
from apiary.control._common import Clock, utcnow
from apiary.control.db import Database, upgrade
from apiary.control.envelope import Envelope, envelope_from_settings
from apiary.control.federation import install_config_log
from apiary.control.key_usage import LastUsedRecorder
from apiary.control.oidc_client import OidcClient
from apiary.control.passwords import DEFAULT_HASHER, HASH_SLOTS
from apiary.control.signing import SigningKeys
from apiary.control.throttle import AuthThrottle
from apiary.outbound import OutboundPolicy
from apiary.settings import ApiarySettings


class ControlPlane:
    """Everything control-plane operations need, created once per process.

    ``clock`` and ``password_hasher`` are injectable so tests can move time and use cheap
    hash parameters; ``http`` is the client used to talk to SSO providers (by default the
    outbound-URL policy's client, :mod:`apiary.outbound`).
    """

    def __init__(
        self,
        settings: ApiarySettings,
        database: Database,
        *,
        envelope: Envelope | None = None,
        clock: Clock = utcnow,
        password_hasher: PasswordHasher = DEFAULT_HASHER,
        http: httpx.Client | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        # Every committed configuration change appends its config-log entry in the same
        # transaction (apiary.control.federation: what federated data planes follow).
        install_config_log(database.session_factory)
        self.envelope = envelope or envelope_from_settings(settings)
        self.clock = clock
        self.password_hasher = password_hasher
        # SSO providers are user-given URLs: the outbound policy's client re-checks every
        # address it connects to (no internal targets, no redirects).
        self.outbound = OutboundPolicy.from_settings(settings)
        self.http = http or self.outbound.client(timeout=10.0)
        # The clock is read through self, so a test that replaces it moves them all.
        self.signing = SigningKeys(settings, self.envelope, clock=lambda: self.clock())
        self.key_usage = LastUsedRecorder(settings.cp_key_last_used_resolution_s)
        self.oidc = OidcClient(self.http, self.outbound)
        # Throttling of credential checks (apiary.control.throttle) and the
        # process-wide bound on concurrent password hashes (apiary.control.passwords).
        self.throttle = AuthThrottle(settings, self.envelope,
                                     clock=lambda: self.clock().timestamp())
        HASH_SLOTS.configure(settings.cp_max_concurrent_password_hashes,
                             settings.cp_password_hash_wait_s)

    @classmethod
    def open(
        cls, settings: ApiarySettings, *, migrate: bool = True, **kwargs: object
    ) -> ControlPlane:
        """Connect to cpdb (``settings.cp_database``), migrating it first unless told not to."""
        url = settings.cp_database
        if url.startswith("sqlite:///"):
            private_dir(settings.data_dir)
        database = Database.open(url)
        if migrate:
            upgrade(database.engine)
        return cls(settings, database, **kwargs)  # type: ignore[arg-type]

    @property
    def issuer(self) -> str:
        return self.settings.cp_issuer_url

    def now(self) -> datetime:
        return self.clock()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.database.transaction() as db:
            yield db

    def close(self) -> None:
        self.throttle.close()
        self.http.close()
        self.database.dispose()
