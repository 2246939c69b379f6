"""Settings both planes read: where things live, Ray, HTTP, outbound calls, Redis, logs.

:class:`CommonSettings` is the base of both plane models (:mod:`._control`, :mod:`._data`):
it holds the configuration every ``APIARY_*`` model shares (variable prefix, frozen,
unknown names refused) and the one URL check (:mod:`._urls`), which applies to every URL
setting of whichever plane declares it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from apiary.settings._fields import MiB, comma_separated, on_cluster
from apiary.settings._urls import URL_RULES, check_url


class CommonSettings(BaseSettings):
    """Settings of both planes. Every field reads ``APIARY_<FIELD NAME>``."""

    model_config = SettingsConfigDict(env_prefix="APIARY_", frozen=True, extra="forbid")

    # --- where things live ----------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("~/.apiary"),
        description="Directory for all embedded state (queue, ClickHouse, keys).",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address the HTTP API listens on.",
    )
    port: int = Field(
        default=8787, ge=1, le=65535,
        description="Port of the HTTP API.",
    )
    plane: Literal["both", "control", "data"] = Field(
        default="both",
        description="The planes `apiary up` runs on this machine: 'both' (an embedded control "
        "plane at <base URL>/cp and the data plane), 'control' (the control plane and its "
        "federation endpoint only: no NATS, ClickHouse or writers, no data-plane secret) or "
        "'data' (the data plane only, trusting the control plane at APIARY_CONTROL_PLANE_URL and "
        "registering with APIARY_BOOTSTRAP_TOKEN; no control-plane secret).",
    )
    ray_address: str | None = Field(
        default=None,
        description="Address of an existing Ray cluster to join (e.g. 'ray://head:10001' or "
        "'head:6379'); unset starts a local Ray instance.",
    )
    ray_num_cpus: int | None = Field(
        default=None, ge=1,
        description="CPUs a locally started Ray may schedule; unset lets Ray count them.",
    )
    ray_object_store_bytes: int = Field(
        default=512 * MiB, ge=78 * MiB,
        description="Shared-memory object store of a locally started Ray (Arrow batches pass "
        "through it on their way to the chDB owner).",
    )
    serve_ingress: Literal["haproxy", "proxy"] = Field(
        default="haproxy",
        description="How HTTP reaches the Serve replicas: 'haproxy' (HAProxy ingress straight into "
        "each replica's own HTTP server) or 'proxy' (Serve's Python HTTP proxy and a Ray call per "
        "request; Serve's default).",
    )

    # --- outbound calls to user-given URLs (apiary.outbound) ------------------------------
    outbound_allowlist: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Hosts (exact names) or IP networks (CIDRs, or single addresses) that "
        "user-given URLs (LLM provider bases, OIDC issuers and their endpoints, webhooks) may "
        "reach although they are loopback, private or link-local, comma-separated; they (and names "
        "resolving only into listed networks) may also be called over http. Everything else must "
        "be https to a public address.",
    )

    # --- rate limits and shared caches ----------------------------------------------------
    redis_url: str | None = Field(
        default=None, json_schema_extra=on_cluster(required=True),
        description="URL of a Redis server holding rate-limit counters and shared caches (e.g. "
        "'redis://redis:6379/0'), shared by all replicas; unset keeps them in each process (limits "
        "then apply per replica).",
    )

    # --- observability --------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description="Log level.",
    )
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="Log line format.",
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("outbound_allowlist", mode="before")
    @classmethod
    def _split_allowlist(cls, value: object) -> object:
        items = comma_separated(value)
        if items is None:
            return value
        entries: list[str] = []
        for item in items:
            entry = str(item).strip().lower().rstrip(".")
            if not entry:
                continue
            if "/" in entry or ":" in entry or entry.replace(".", "").isdigit():
                try:
                    ipaddress.ip_network(entry.strip("[]"), strict=False)
                except ValueError:
                    raise ValueError(
                        f"{item!r} is neither a host name nor an IP network such as "
                        "'10.0.0.0/8' or '127.0.0.1'"
                    ) from None
            entries.append(entry)
        return tuple(entries)

    # One validator for every URL setting, including those the plane models declare.
    @field_validator(*URL_RULES, check_fields=False)
    @classmethod
    def _check_url(
        cls, value: str | SecretStr | None, info: ValidationInfo
    ) -> str | SecretStr | None:
        return check_url(info.field_name or "", value)

    @property
    def base_url(self) -> str:
        """The HTTP API's URL on this host (a wildcard listen address becomes 127.0.0.1)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"
