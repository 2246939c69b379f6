"""The body of ``POST /v1/chat/completions``: OpenAI's chat completion parameters, and only
those.

Only the parameters named here reach LiteLLM (:meth:`ChatCompletionRequest.provider_params`),
and anything else is a 400 naming it. That closes the door to LiteLLM's own keyword
arguments: a caller who could pass ``api_base``, ``api_key``, ``base_url``, ``extra_headers``
or ``custom_llm_provider`` could send the workspace's provider key to a server of their
choosing, or run on a key of their own in the workspace's name.

Two fields are the proxy's and never reach the provider: ``metadata`` (merged into the
traced model event's metadata) and ``timeout`` (seconds, capped by
``APIARY_PROXY_TIMEOUT_S``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
#: Parameters that describe the call (traced as the event's hyperparameters).
_PROXY_ONLY = frozenset({"model", "messages", "stream", "stream_options", "metadata",
                         "timeout"})


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request (``model`` as ``<provider>/<model>``, or a model
    name LiteLLM knows the provider of)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256,
                       description="'<provider>/<model>', e.g. 'openai/gpt-4o-mini' or "
                       "'anthropic/claude-3-5-haiku-latest'.")
    messages: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=16)
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    user: str | None = Field(default=None, max_length=256)
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=128)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = Field(default=None, max_length=128)
    function_call: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    reasoning_effort: str | None = Field(default=None, max_length=32)
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    service_tier: str | None = Field(default=None, max_length=32)
    metadata: dict[str, Any] | None = Field(
        default=None, description="Not sent to the provider: added to the traced event's "
        "metadata.")
    timeout: float | None = Field(
        default=None, gt=0, description="Seconds to wait for the provider (capped by the "
        "server's limit). Not sent to the provider.")

    @field_validator("messages")
    @classmethod
    def _roles(cls, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, message in enumerate(messages):
            if message.get("role") not in ROLES:
                raise ValueError(f"messages[{index}].role must be one of "
                                 + ", ".join(sorted(ROLES)))
        return messages

    @property
    def wants_usage(self) -> bool:
        """Whether a streaming caller asked for the usage chunk (OpenAI's
        ``stream_options.include_usage``)."""
        return bool((self.stream_options or {}).get("include_usage"))

    def hyperparameters(self) -> dict[str, Any]:
        """The parameters given for the provider besides model and messages."""
        return self.model_dump(exclude_none=True, exclude=set(_PROXY_ONLY))

    def provider_params(self) -> dict[str, Any]:
        """Keyword arguments for ``litellm.acompletion`` (without model, key and base)."""
        params = self.hyperparameters()
        params["messages"] = self.messages
        if self.stream:
            # Always ask for usage, so the call can be traced with it; the usage chunk
            # is dropped on the way back unless the caller asked for it too.
            params["stream"] = True
            params["stream_options"] = {**(self.stream_options or {}), "include_usage": True}
        return params
