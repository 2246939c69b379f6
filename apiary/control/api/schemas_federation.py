"""Request and response bodies of the federation endpoints (``/v1/data-planes*``, a
project's data plane). The bootstrap token is the one secret handed out (shown once)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from apiary.control.api.schemas import DataPlaneOut
from apiary.control.federation import DEFAULT_BOOTSTRAP_TTL_S, MAX_BOOTSTRAP_TTL_S


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class DataPlaneCreate(_Request):
    name: str = Field(min_length=1, max_length=200)
    url: str = Field(max_length=2000, description="The data plane's public URL (SDKs send "
                     "there; a 421 names it to callers of another data plane).")
    org_id: str | None = Field(default=None, max_length=64,
                               description="Dedicate it to one organization (its owner may "
                               "then create and manage it); unset: shared (installation "
                               "admins only).")
    bootstrap_ttl_s: int = Field(default=DEFAULT_BOOTSTRAP_TTL_S, ge=60,
                                 le=MAX_BOOTSTRAP_TTL_S)


class DataPlaneCreated(_Response):
    id: str
    name: str
    url: str
    org_id: str | None
    bootstrap_token: str = Field(description="One-time, expiring; shown once (only its "
                                 "SHA-256 is stored). Give it to the data plane as "
                                 "APIARY_BOOTSTRAP_TOKEN.")
    bootstrap_expires_at: datetime


class DataPlaneRegister(_Request):
    bootstrap_token: str = Field(max_length=200)
    public_jwk: dict[str, Any] = Field(description="The data plane's ECDSA P-256 public key "
                                       "as a JWK (kty EC, crv P-256, x, y); never a private "
                                       "key.")
    apiary_version: str | None = Field(default=None, max_length=64)


class DataPlaneRegistered(_Response):
    data_plane_id: str
    name: str
    issuer: str
    jwks_url: str
    federation_endpoint: str = Field(description="host:port of the federation stream")
    federation_tls: bool = Field(
        default=False, description="Whether the federation endpoint serves TLS: the data plane "
        "then always dials it with TLS (verifying its certificate), never in plaintext.")
    control_plane_version: str


class DataPlaneStatusOut(DataPlaneOut):
    org_id: str | None
    status: Literal["pending", "active", "revoked"]
    federated: bool
    connected: bool
    draining: bool
    last_seen_at: datetime | None
    version: str | None
    versions: dict[str, Any] | None
    last_health: dict[str, Any] | None
    applied_config_version: int | None
    projects: list[str]
    created_at: datetime


class DataPlaneDetailOut(DataPlaneStatusOut):
    health_history: list[dict[str, Any]] = Field(
        description="Every health report of the last hour, oldest first ({at, ...Health}).")
    commands: list[CommandOut]


class CommandOut(_Response):
    id: str
    kind: str
    created_at: datetime
    sent_at: datetime | None
    completed_at: datetime | None
    ok: bool | None
    error: str | None


class DrainRequest(_Request):
    enabled: bool


class ServesNewProjectsSet(_Request):
    enabled: bool = Field(description="true: new projects are assigned to this data plane "
                          "(any other data plane is unmarked); false: to none.")


class ProjectDataPlaneSet(_Request):
    data_plane_id: str | None = Field(max_length=200, description="The data plane that serves "
                                      "the project; null: unassigned (any legacy data plane).")


DataPlaneDetailOut.model_rebuild()
