"""The LLM proxy: an OpenAI chat completion, routed by LiteLLM with the workspace's key,
traced as a model event.

:meth:`ChatProxy.complete` is the whole contract, usable over HTTP
(``apiary.dataplane.evaluation.proxy.routes``) and in-process (an evaluator's LLM judge):

- The provider comes from the model (``openai/gpt-4o-mini`` → ``openai``); the key is the
  calling workspace's credential for that provider
  (``apiary.dataplane.evaluation.proxy.credentials``), never another workspace's, and no key at all
  is 400 ``provider_not_configured``. The credential's ``api_base``/``api_version`` go with it.
- LiteLLM is called with that key and nothing the caller could use to redirect it
  (:mod:`apiary.dataplane.evaluation.proxy.request`); no retries (the caller decides), a timeout of
  at most ``APIARY_PROXY_TIMEOUT_S``.
- The key only ever reaches an address the outbound-URL policy (:mod:`apiary.outbound`)
  accepts: the credential's ``api_base`` is checked again right before the call, and every
  connection LiteLLM opens during the call is checked again when it is made, on the address
  it then connects to (:mod:`apiary.dataplane.evaluation.proxy._egress`; DNS rebinding). A refusal
  is 400 ``outbound_url_refused``, and nothing is sent.
- Failures become :mod:`apiary.dataplane.evaluation.proxy.errors` (4xx/502/504, never 500), with the
  key redacted from any text the provider sent back.
- Streams: the first chunk is awaited before :meth:`complete` returns, so a call that fails
  before it streams anything fails with a status, like a non-streaming one. A failure after
  that ends the stream with an ``error`` event.
- Every call that reached the provider is traced (:mod:`apiary.dataplane.evaluation.proxy.tracing`):
  usage and cost, latency (and time to first token), the error if any; submitted when the answer is
  complete, published off the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from apiary.dataplane.db import DataPlaneDatabase, ProviderCredential
from apiary.dataplane.enrich import PriceTable
from apiary.dataplane.evaluation.proxy import credentials as vault
from apiary.dataplane.evaluation.proxy._egress import UNGUARDED_PROVIDERS, guarded
from apiary.dataplane.evaluation.proxy._litellm import litellm
from apiary.dataplane.evaluation.proxy.envelope import Envelope
from apiary.dataplane.evaluation.proxy.errors import (
    CallAbandoned,
    ProviderError,
    ProviderNotConfigured,
    provider_error,
)
from apiary.dataplane.evaluation.proxy.request import ChatCompletionRequest
from apiary.dataplane.evaluation.proxy.tracing import CallTrace, TraceLink, TraceSink, now_ms
from apiary.errors import ApiaryError, InvalidRequest, OutboundUrlRefused
from apiary.event import Tenant
from apiary.outbound import OutboundPolicy

_DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls: the tenant the call is traced into (its workspace's keys are used) and
    the subject recorded on the event."""

    tenant: Tenant
    subject: str


@dataclass(frozen=True, slots=True)
class Completion:
    """A non-streaming answer: OpenAI's chat completion object."""

    event_id: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CompletionStream:
    """A streaming answer: server-sent events (``data: {chunk}``, then ``data: [DONE]``)."""

    event_id: str
    events: AsyncIterator[bytes]


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class ChatProxy:
    """Proxied chat completions for one data plane (see the module docstring)."""

    def __init__(self, *, database: Callable[[], DataPlaneDatabase],
                 envelope: Callable[[], Envelope], sink: TraceSink, timeout_s: float,
                 outbound: OutboundPolicy | None = None) -> None:
        self._database = database
        self._envelope = envelope
        self._sink = sink
        self._timeout_s = timeout_s
        # No policy given: the strictest one (public https only, nothing allow-listed).
        self._outbound = outbound if outbound is not None else OutboundPolicy()
        self._prices: PriceTable | None = None

    @property
    def sink(self) -> TraceSink:
        return self._sink

    async def complete(self, caller: Caller, request: ChatCompletionRequest,
                       link: TraceLink | None = None) -> Completion | CompletionStream:
        lib = await litellm()
        provider, model = self._route(lib, request.model)
        if provider in UNGUARDED_PROVIDERS:
            raise InvalidRequest(
                f"provider {provider!r} is not supported by this proxy: its connections "
                "cannot be checked against the outbound-URL policy", field="model")
        credential, api_key = await asyncio.to_thread(self._credential, caller, provider)
        if credential.api_base:
            # Accepted when stored, but DNS (or the allow-list) may have changed since.
            await asyncio.to_thread(self._outbound.check_url, credential.api_base,
                                    field="api_base")
        trace = CallTrace(
            tenant=caller.tenant, caller=caller.subject, provider=provider, model=model,
            credential_id=credential.id, messages=request.messages,
            hyperparameters=request.hyperparameters(), stream=request.stream,
            link=link or TraceLink(), user_metadata=dict(request.metadata or {}),
        )
        params: dict[str, Any] = {
            **request.provider_params(), "model": f"{provider}/{model}", "api_key": api_key,
            "timeout": min(request.timeout or self._timeout_s, self._timeout_s),
            "max_retries": 0, "num_retries": 0,
        }
        if credential.api_base:
            params["api_base"] = credential.api_base
        if credential.api_version:
            params["api_version"] = credential.api_version
        secrets = (api_key,)
        # Every connection LiteLLM opens from here on is checked when it is made. The
        # stream's later chunks arrive on the connection opened (and checked) here.
        with guarded(self._outbound) as guard:
            try:
                answer = await lib.acompletion(**params)
                if not request.stream:
                    body: dict[str, Any] = answer.model_dump()
                    trace.succeed(body, self._cost(lib, answer, provider, model))
                    self._sink.submit(caller.tenant, trace.event())
                    return Completion(trace.event_id, body)
                chunks = answer.__aiter__()
                first = await anext(chunks, None)
                if first is None:
                    raise ProviderError(f"{provider} answered with an empty stream",
                                        provider=provider)
            except asyncio.CancelledError:
                self._record_failure(trace,
                                     CallAbandoned("the caller went away before the answer"))
                raise
            except Exception as exc:
                error: ApiaryError
                if guard.refused is not None:
                    error = OutboundUrlRefused(
                        f"the call to {provider} was refused: {guard.refused.message}",
                        field="api_base", reason=guard.refused.context.get("reason"),
                        provider=provider)
                else:
                    error = provider_error(exc, provider=provider, secrets=secrets)
                self._record_failure(trace, error)
                raise error from None
        trace.first_token_ms = now_ms()
        relay = self._relay(lib, trace, answer, chunks, first, request.wants_usage, secrets)
        return CompletionStream(trace.event_id, relay)

    # --- routing and keys ------------------------------------------------------------

    @staticmethod
    def _route(lib: Any, requested: str) -> tuple[str, str]:
        """``(provider, model)`` of a requested model name, as LiteLLM resolves it."""
        try:
            model, provider, _, _ = lib.get_llm_provider(requested)
        except Exception:
            raise InvalidRequest(
                f"cannot tell the provider of model {requested[:100]!r}: name it as "
                "'<provider>/<model>', e.g. 'openai/gpt-4o-mini'", field="model") from None
        return str(provider), str(model)

    def _credential(self, caller: Caller,
                    provider: str) -> tuple[ProviderCredential, str]:
        workspace = vault.Workspace(caller.tenant["org_id"], caller.tenant["workspace_id"])
        with self._database().transaction() as db:
            credential = vault.credential_for(db, workspace, provider)
            if credential is None:
                raise ProviderNotConfigured(
                    f"this workspace has no credential for provider {provider!r}; add one "
                    "with POST /v1/proxy/credentials", field="model")
            db.expunge(credential)
        return credential, vault.reveal(self._envelope(), credential)

    # --- results ---------------------------------------------------------------------

    def _cost(self, lib: Any, response: Any, provider: str, model: str) -> float | None:
        """USD of the call: LiteLLM's price map, else Apiary's table, else unknown."""
        try:
            return float(lib.completion_cost(completion_response=response,
                                             model=f"{provider}/{model}"))
        except Exception:
            pass  # not in LiteLLM's map (a local or custom model): try Apiary's own table
        usage = getattr(response, "usage", None)
        if usage is None:
            return None
        if self._prices is None:
            self._prices = PriceTable.bundled()
        return self._prices.cost(model, provider, int(getattr(usage, "prompt_tokens", 0) or 0),
                                 int(getattr(usage, "completion_tokens", 0) or 0))

    def _record_failure(self, trace: CallTrace, error: ApiaryError) -> None:
        trace.fail(error.message, error_code=error.error_code, status=error.status)
        self._sink.submit(trace.tenant, trace.event())

    async def _relay(self, lib: Any, trace: CallTrace, wrapper: Any,
                     chunks: AsyncIterator[Any], first: Any, forward_usage: bool,
                     secrets: tuple[str, ...]) -> AsyncIterator[bytes]:
        """The stream as server-sent events; traces the call however the stream ends."""
        received: list[Any] = []
        error: ApiaryError | None = None
        finished = False
        try:
            chunk = first
            while chunk is not None:
                received.append(chunk)
                payload = chunk.model_dump(exclude_none=True)
                if not forward_usage:
                    payload.pop("usage", None)
                if payload.get("choices") or forward_usage:
                    yield _sse(payload)
                chunk = await anext(chunks, None)
            finished = True
            yield _DONE
        except Exception as exc:
            error = provider_error(exc, provider=trace.provider, secrets=secrets)
            yield _sse({"error": {"message": error.message, "type": error.error_code,
                                  "code": error.error_code},
                        "message": error.message, "errorCode": error.error_code})
        finally:
            if error is None and not finished:
                # Closed while waiting at a chunk: the caller went away (or was cancelled).
                error = CallAbandoned("the caller went away before the stream ended")
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().create_task(wrapper.aclose())
            self._finish_stream(lib, trace, received, error)

    def _finish_stream(self, lib: Any, trace: CallTrace, received: list[Any],
                       error: ApiaryError | None) -> None:
        response = None
        if received:
            with contextlib.suppress(Exception):
                response = lib.stream_chunk_builder(received, messages=trace.messages)
        if response is not None:
            trace.succeed(response.model_dump(),
                          self._cost(lib, response, trace.provider, trace.model))
        if error is not None:
            trace.fail(error.message, error_code=error.error_code, status=error.status)
        self._sink.submit(trace.tenant, trace.event())
