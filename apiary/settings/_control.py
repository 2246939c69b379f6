"""Settings of the control plane: its database and keys, tokens, sessions, sign-up and login
throttling, invitations and mail (``APIARY_CP_*``, ``APIARY_SMTP_*``)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from apiary.settings._common import CommonSettings
from apiary.settings._fields import comma_separated, default_help, on_cluster
from apiary.settings._files import pem_certificates, private_pem_key


class ControlPlaneSettings(CommonSettings):
    """What the control plane reads (beside :class:`CommonSettings`)."""

    cp_database_url: str | None = Field(
        default=None, json_schema_extra=on_cluster(secret=True, required=True),
        description="SQLAlchemy URL of the control plane's database (cpdb), e.g. "
        "'postgresql+psycopg://user:pass@pg:5432/apiary_cp'; unset uses the SQLite file "
        "<data-dir>/cp.sqlite.",
    )
    cp_issuer: str | None = Field(
        default=None, json_schema_extra=on_cluster(required=True),
        description="URL at which data planes reach the control plane: the 'iss' of every token it "
        "signs, with {issuer}/.well-known/jwks.json and {issuer}/v1/auth/token under it, and the "
        "base of OIDC redirect URIs. Unset: <base_url>/cp.",
    )
    cp_envelope_key: SecretStr | None = Field(
        default=None, json_schema_extra=on_cluster(secret=True, required=True),
        description="Base64 (url-safe) of 32 random bytes: the AES-256-GCM key that encrypts "
        "secrets at rest in cpdb (signing keys, TOTP secrets, OIDC client secrets). Unset: "
        "generated once into <data-dir>/cp-envelope.key (mode 0600).",
    )
    cp_token_ttl_s: int = Field(
        default=300, ge=30, le=3600,
        description="Lifetime of the access tokens the control plane signs (for data planes, and "
        "for itself).",
    )
    cp_jwks_cache_s: int = Field(
        default=300, ge=0, le=86_400,
        description="How long data planes may cache the JWKS (sent as Cache-Control max-age); a "
        "rotated-in signing key is published this long before it signs. Must be at least every "
        "data plane's APIARY_JWKS_MAX_AGE_S.",
    )
    cp_session_ttl_s: int = Field(
        default=7 * 86_400, ge=300,
        description="Lifetime of a user's login session.",
    )
    cp_recent_auth_s: int = Field(
        default=900, ge=30, le=86_400,
        description="How recently a session must have authenticated (logged in or "
        "re-authenticated) to manage API keys, members, roles, SSO providers or the organization.",
    )
    cp_signup_enabled: bool = Field(
        default=True,
        description="Whether anyone may create an account with email and password (invited users "
        "and SSO users are unaffected).",
    )
    cp_password_min_length: int = Field(
        default=10, ge=8, le=128,
        description="Shortest password accepted.",
    )
    cp_login_max_failures: int = Field(
        default=5, ge=1,
        description="Wrong passwords one client address may try on one account before that pair "
        "backs off exponentially (1 s, 2 s, 4 s, ... up to APIARY_CP_LOGIN_LOCKOUT_S); other "
        "addresses, and the right password from them, are not affected.",
    )
    cp_login_lockout_s: int = Field(
        default=900, ge=1,
        description="Longest back-off of one client address on one account, and how long its "
        "failures are remembered.",
    )
    cp_login_account_backoff_max_s: float = Field(
        default=5.0, ge=0,
        description="Longest wait the account-wide back-off imposes between wrong passwords on one "
        "account from all addresses together (it grows slowly after 20 failures); seconds, never a "
        "lockout.",
    )
    cp_auth_ip_per_min: int = Field(
        default=30, ge=1,
        description="Credential checks (login, sign-up, password change, TOTP, SSO second factor) "
        "one client address may make per minute, all at once at most; beyond it 429 with "
        "Retry-After.",
    )
    cp_auth_ip_max_failures: int = Field(
        default=20, ge=1,
        description="Wrong passwords one client address may send across all accounts (credential "
        "stuffing, password spraying) at once; beyond that it is held to that many per hour (429 "
        "with Retry-After).",
    )
    cp_session_token_per_min: int = Field(
        default=60, ge=1,
        description="Data-plane tokens one user, and one client address, may get by exchanging a "
        "session per minute.",
    )
    cp_totp_max_failures: int = Field(
        default=5, ge=1,
        description="Wrong TOTP or recovery codes (at login, SSO, enrolment, disabling) one "
        "account may send within APIARY_CP_TOTP_WINDOW_S; then 429 for the window, doubling at "
        "each repetition up to 1 hour.",
    )
    cp_totp_window_s: int = Field(
        default=300, ge=1,
        description="Window of APIARY_CP_TOTP_MAX_FAILURES, and the first TOTP back-off.",
    )
    cp_max_concurrent_password_hashes: int = Field(
        default_factory=lambda: min(8, 2 * (os.cpu_count() or 1)), ge=1,
        json_schema_extra=default_help("2 x CPUs, at most 8"),
        description="Password hashes (argon2id, 64 MiB each) one control-plane process computes at "
        "once; a request that finds no slot within APIARY_CP_PASSWORD_HASH_WAIT_S gets 503 with "
        "Retry-After.",
    )
    cp_password_hash_wait_s: float = Field(
        default=2.0, ge=0,
        description="How long a login waits for a password-hash slot.",
    )
    cp_trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Networks (CIDRs or addresses, comma-separated) of reverse proxies whose "
        "X-Forwarded-For names the client address the control plane throttles by; from any other "
        "peer the header is ignored. Empty: the socket peer is the client. `apiary up`'s HAProxy "
        "passes a client's X-Forwarded-For through unchanged, so never list it unless a proxy that "
        "appends the real address stands in front of it.",
    )
    cp_invitation_ttl_s: int = Field(
        default=7 * 86_400, ge=60,
        description="How long an invitation can be accepted.",
    )
    cp_email_verification_ttl_s: int = Field(
        default=86_400, ge=60,
        description="How long a mailed email-verification link (sign-up, email change) can be "
        "used; each link works once.",
    )
    smtp_url: SecretStr | None = Field(
        default=None, json_schema_extra=on_cluster(secret=True),
        description="SMTP server that sends verification and invitation mail: 'smtp://host:port' "
        "(plain), 'smtp+starttls://user:pass@host:port' or 'smtps://user:pass@host:port' (TLS). "
        "The mail is queued in cpdb with what it announces and sent by the control-plane "
        "controller, with retries (notify_retry_base_s, notify_retry_max_s, notify_max_age_s). "
        "Unset (and cp_ses_region unset): the mail stays queued and `apiary users verify-link "
        "EMAIL` prints a verification link.",
    )
    smtp_from: str = Field(
        default="Apiary <apiary@localhost>", min_length=3, max_length=320,
        description="From address of the mail Apiary sends.",
    )
    cp_ses_region: str | None = Field(
        default=None,
        description="AWS region of Amazon SES: set, verification and invitation mail goes "
        "through SES (boto3; credentials from the usual AWS_* variables; smtp_from must be a "
        "sender SES verified) instead of smtp_url.",
    )
    cp_ses_endpoint_url: str | None = Field(
        default=None,
        description="SES endpoint of the control plane's mail for an SES-compatible server; "
        "unset uses AWS's.",
    )
    cp_key_last_used_resolution_s: int = Field(
        default=60, ge=1,
        description="Granularity of an API key's last-used time: it is written at most this often "
        "per key.",
    )
    cp_replicas: int = Field(
        default=1, ge=1,
        description="Replicas of the control-plane HTTP deployment.",
    )
    ui_dir: Path | None = Field(
        default=None,
        description="Directory of the built web UI the control plane serves at its root (a "
        "`vite build` output with index.html). Unset: the package's own build (`make ui` writes "
        "it into apiary/control/webui/).",
    )
    federation_grpc_port: int = Field(
        default=4320, ge=0, le=65535,
        description="Port of the federation endpoint (gRPC) that federated data planes dial out "
        "to, on the host address. 0 turns it off.",
    )
    federation_public_endpoint: str | None = Field(
        default=None, pattern=r"^[^\s/]+:[0-9]{1,5}$",
        description="host:port of the federation endpoint as data planes reach it, told to each "
        "at registration. Unset: the host of the issuer URL and federation_grpc_port.",
    )
    federation_health_interval_s: float = Field(
        default=5.0, ge=0.5, le=300,
        description="How often connected data planes report their health on the federation "
        "stream; the control plane keeps the last hour of reports.",
    )
    federation_tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate (chain) the federation endpoint serves TLS with; set with "
        "federation_tls_key_file. Its names must include the host of the federation endpoint "
        "data planes dial. Data planes registering after it is set are told to dial with TLS. "
        "Unset: the stream is plaintext (authenticated, not encrypted).",
    )
    federation_tls_key_file: Path | None = Field(
        default=None,
        description="PEM private key of federation_tls_cert_file; readable by Apiary's user "
        "only (mode 0600 or 0400), else start-up is refused.",
    )

    @field_validator("cp_trusted_proxies", mode="before")
    @classmethod
    def _split_trusted_proxies(cls, value: object) -> object:
        items = comma_separated(value)
        if items is None:
            return value
        networks: list[str] = []
        for item in items:
            entry = str(item).strip()
            if not entry:
                continue
            try:
                networks.append(str(ipaddress.ip_network(entry.strip("[]"), strict=False)))
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP network such as '10.0.0.0/8' or '127.0.0.1'"
                ) from None
        return tuple(networks)

    @field_validator("federation_tls_cert_file")
    @classmethod
    def _federation_certificate(cls, value: Path | None) -> Path | None:
        return None if value is None else pem_certificates(value, "federation TLS certificate")

    @field_validator("federation_tls_key_file")
    @classmethod
    def _federation_key(cls, value: Path | None) -> Path | None:
        return None if value is None else private_pem_key(value, "federation TLS key")

    @model_validator(mode="after")
    def _federation_tls_pair(self) -> ControlPlaneSettings:
        if (self.federation_tls_cert_file is None) != (self.federation_tls_key_file is None):
            given, missing = (("APIARY_FEDERATION_TLS_CERT_FILE",
                               "APIARY_FEDERATION_TLS_KEY_FILE")
                              if self.federation_tls_key_file is None else
                              ("APIARY_FEDERATION_TLS_KEY_FILE",
                               "APIARY_FEDERATION_TLS_CERT_FILE"))
            raise ValueError(
                f"{given} is set but {missing} is not: the federation endpoint's TLS needs "
                "both the certificate and its private key (PEM files); set both, or neither "
                "for a plaintext stream")
        return self

    @property
    def federation_serves_tls(self) -> bool:
        """Whether the federation endpoint serves TLS (a certificate and key are set)."""
        return self.federation_tls_cert_file is not None

    @property
    def cp_database(self) -> str:
        """The cpdb URL in force: ``cp_database_url``, or the embedded SQLite file."""
        return self.cp_database_url or f"sqlite:///{self.data_dir / 'cp.sqlite'}"

    @property
    def cp_issuer_url(self) -> str:
        """The control plane's issuer URL in force (no trailing slash)."""
        return (self.cp_issuer or f"{self.base_url}/cp").rstrip("/")

    @property
    def federation_endpoint_advertised(self) -> str:
        """``host:port`` data planes dial for the federation stream:
        ``federation_public_endpoint``, else the issuer URL's host and
        ``federation_grpc_port``."""
        if self.federation_public_endpoint:
            return self.federation_public_endpoint
        host = urlsplit(self.cp_issuer_url).hostname or "127.0.0.1"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{self.federation_grpc_port}"
