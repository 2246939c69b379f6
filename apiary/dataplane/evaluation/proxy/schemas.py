"""Request and response bodies of the LLM proxy's credential endpoints.

Keys arrive as :class:`~pydantic.SecretStr`, so that no ``repr``, validation message or log
line of a request model can show them; no response model has a field that could hold one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from apiary.dataplane.events.schemas import ID_PATTERN


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CredentialCreate(_Request):
    provider: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN,
                          description="A LiteLLM provider: 'openai', 'anthropic', 'azure', ...")
    api_key: SecretStr = Field(description="The provider key. Stored encrypted; never shown "
                               "again (only its last four characters, for long keys).")
    api_base: str | None = Field(default=None, max_length=2000, pattern=ID_PATTERN,
                                 description="The provider's base URL, for self-hosted or "
                                 "OpenAI-compatible endpoints: https to a public address "
                                 "(http or private addresses only for hosts on the "
                                 "operator's APIARY_OUTBOUND_ALLOWLIST).")
    api_version: str | None = Field(default=None, max_length=64, pattern=ID_PATTERN,
                                    description="API version (Azure OpenAI).")
    name: str | None = Field(default=None, max_length=200, pattern=ID_PATTERN)


class CredentialUpdate(_Request):
    """Fields present are changed (``api_key`` rotates the key; null clears the optional
    ``api_base``, ``api_version`` and ``name``). Changing ``api_base`` needs ``api_key`` in
    the same request: a stored key is never sent to a new endpoint."""

    api_key: SecretStr | None = None
    api_base: str | None = Field(default=None, max_length=2000, pattern=ID_PATTERN)
    api_version: str | None = Field(default=None, max_length=64, pattern=ID_PATTERN)
    name: str | None = Field(default=None, max_length=200, pattern=ID_PATTERN)


class CredentialOut(BaseModel):
    id: str
    provider: str
    name: str | None
    api_base: str | None
    api_version: str | None
    key_hint: str = Field(description="'…' and the key's last four characters ('…' alone "
                          "for keys under 20 characters).")
    workspace_id: str
    created_by: str | None
    created_at: str
    updated_at: str


class CredentialsResponse(BaseModel):
    credentials: list[CredentialOut]


class CredentialDeleted(BaseModel):
    deleted: bool
    id: str
