"""Request and response bodies of email verification, linked SSO identities, claimed email
domains, the SSO second factor and the organization's SSO settings. Requests reject
unknown fields."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class VerifyEmailRequest(_Request):
    token: str = Field(max_length=200, description="The token of the mailed link.")


class VerifiedEmailOut(_Response):
    user_id: str
    email: str
    email_verified: bool


class EmailChangeRequest(_Request):
    email: str = Field(max_length=320, description="The new address; it replaces the old "
                       "one only once the link mailed to it is used.")
    current_password: str | None = Field(
        default=None, max_length=1024,
        description="Required when the account has a password.")


class VerificationPendingOut(_Response):
    email: str = Field(description="The address the link was sent to.")
    expires_at: datetime
    mailed: bool = Field(description="Whether the mail is on its way: it is queued with the "
                         "link and a mail transport (SMTP or SES) is configured to send it, "
                         "with retries. False: no transport is configured, the mail stays "
                         "queued, and an operator can print the link (`apiary users "
                         "verify-link`).")


class IdentityOut(_Response):
    id: str
    provider_id: str
    provider_name: str
    org_id: str
    subject: str
    email: str | None
    created_at: datetime


class LinkStartOut(_Response):
    authorization_url: str = Field(description="Send the browser here; the identity is "
                                   "linked to this account when the IdP sends it back.")


class DomainClaimRequest(_Request):
    domain: str = Field(max_length=253)


class DomainOut(_Response):
    id: str
    org_id: str
    domain: str
    created_at: datetime
    approved: bool
    approved_at: datetime | None


class SsoMfaRequest(_Request):
    totp_code: str | None = Field(default=None, max_length=16)
    recovery_code: str | None = Field(default=None, max_length=32)


class SsoDiscoverRequest(_Request):
    email: str = Field(max_length=320, description="The address the user signs in with; only "
                       "its domain is looked at.")


class SsoDiscoverOut(_Response):
    provider_id: str
    provider_name: str
    domain: str
    login_url: str = Field(description="Send the browser here (GET) to sign in; add "
                           "return_to=<path> to land on that page afterwards.")


class SsoSettings(_Request):
    trust_idp_mfa: bool = Field(description="Accept the IdP's MFA (an `amr` naming mfa, otp, "
                                "hwk or sc) instead of asking SSO users for their TOTP code.")


class SsoSettingsOut(_Response):
    org_id: str
    trust_idp_mfa: bool
