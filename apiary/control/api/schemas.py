"""Request and response bodies of the control-plane API: identity, tenancy, keys, tokens,
SSO. Requests reject unknown fields (``extra="forbid"``); responses never carry secrets
except the one response that hands a secret out (marked "shown once")."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- identity -----------------------------------------------------------------------


class SignupRequest(_Request):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    display_name: str | None = Field(default=None, max_length=200)


class LoginRequest(_Request):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    totp_code: str | None = Field(default=None, max_length=16)
    recovery_code: str | None = Field(default=None, max_length=32)


class ReauthenticateRequest(_Request):
    """Proof of the account's credentials again, for management that needs a recent login."""

    password: str = Field(max_length=1024)
    totp_code: str | None = Field(default=None, max_length=16)
    recovery_code: str | None = Field(default=None, max_length=32)


class UserOut(_Response):
    id: str
    email: str
    display_name: str | None
    created_at: datetime
    mfa_enabled: bool = False
    email_verified: bool = Field(default=False, description="Until it is, the account owns "
                                 "nothing: no organizations, invitations or tokens.")
    has_password: bool = Field(default=False, description="False for an account that signs "
                               "in only by single sign-on (it cannot change a password).")


class SessionOut(_Response):
    session_token: str = Field(description="Shown once; also set as the session cookie.")
    expires_at: datetime
    auth_method: str
    user: UserOut


class PasswordChangeRequest(_Request):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class PasswordChangeOut(_Response):
    revoked_sessions: int


class TotpEnrolmentOut(_Response):
    secret: str = Field(description="Base32 TOTP secret, shown once.")
    otpauth_uri: str


class TotpCodeRequest(_Request):
    code: str = Field(max_length=32, description="A TOTP code (or, to disable, a recovery code)")


class RecoveryCodesOut(_Response):
    recovery_codes: list[str] = Field(description="Ten single-use codes, shown once.")


# --- tenancy ------------------------------------------------------------------------


class NameRequest(_Request):
    name: str = Field(min_length=1, max_length=200)


class OrgOut(_Response):
    id: str
    name: str
    created_at: datetime


class WorkspaceOut(_Response):
    id: str
    org_id: str
    name: str
    created_at: datetime


class ProjectOut(_Response):
    id: str
    org_id: str
    workspace_id: str
    name: str
    created_at: datetime
    data_plane_id: str | None = Field(
        default=None, description="The federated data plane serving the project (null: any "
        "legacy data plane).")


class MembershipOut(_Response):
    id: str
    user_id: str
    org_id: str
    workspace_id: str | None
    project_id: str | None
    role: str
    scope_name: str | None = None
    email: str | None = Field(default=None, description="The member's email (in the org's "
                              "membership listing, for members:read).")


class MeOut(_Response):
    user: UserOut
    memberships: list[MembershipOut]


class MembershipCreate(_Request):
    user_id: str
    role: str
    workspace_id: str | None = None
    project_id: str | None = None


class RoleChange(_Request):
    role: str


class InvitationCreate(_Request):
    email: str = Field(max_length=320)
    role: str
    workspace_id: str | None = None
    project_id: str | None = None


class InvitationOut(_Response):
    id: str
    org_id: str
    workspace_id: str | None
    project_id: str | None
    email: str
    role: str
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None


class InvitationIssuedOut(_Response):
    invitation: InvitationOut
    token: str = Field(description="Shown once: whoever holds it can accept the invitation.")


class AcceptInvitation(_Request):
    token: str = Field(max_length=200)


class RoleCreate(_Request):
    name: str = Field(max_length=64)
    permissions: list[str]


class RoleUpdate(_Request):
    permissions: list[str]


class RoleOut(_Response):
    id: str
    name: str
    builtin: bool
    permissions: list[str]


# --- API keys, tokens, data planes --------------------------------------------------


class KeyCreate(_Request):
    name: str = Field(min_length=1, max_length=200)
    permissions: list[str] | None = Field(
        default=None, description="Default: events:write and events:read."
    )


class KeyOut(_Response):
    id: str
    name: str
    scope: Literal["project", "workspace"]
    org_id: str
    workspace_id: str
    project_id: str | None
    permissions: list[str]
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyIssuedOut(_Response):
    key: KeyOut
    api_key: str = Field(description="The whole key, shown once; only its hash is stored.")


class TokenRequest(_Request):
    audience: str | None = Field(
        default=None, max_length=200, description="The id of a registered data plane (a "
        "data-plane token), or the control plane's issuer URL (a control-plane token, the "
        "only token the control plane accepts). Required, unless a federated data plane "
        "sends its identity (header Apiary-Data-Plane): its own id is then the audience.")
    project_id: str | None = Field(
        default=None,
        description="Required with a user session; with a workspace key, narrows the token "
        "to one project of the workspace.",
    )


class TokenOut(_Response):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class DataPlaneOut(_Response):
    id: str
    name: str
    url: str
    serves_new_projects: bool = Field(
        default=False, description="New projects are assigned to this data plane when they "
        "are created (at most one data plane is marked).")


# --- SSO ----------------------------------------------------------------------------


class OidcProviderCreate(_Request):
    name: str = Field(min_length=1, max_length=200)
    issuer: str = Field(max_length=2000)
    client_id: str = Field(max_length=500)
    client_secret: str | None = Field(default=None, max_length=2000)
    scopes: str = Field(default="openid email profile", max_length=500)
    default_role: str = "member"


class OidcProviderUpdate(_Request):
    enabled: bool


class OidcProviderOut(_Response):
    id: str
    org_id: str
    name: str
    issuer: str
    client_id: str
    scopes: str
    default_role: str
    enabled: bool
    redirect_uri: str
    login_url: str
