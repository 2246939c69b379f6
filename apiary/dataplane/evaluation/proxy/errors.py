"""What a failed provider call becomes for the proxy's caller: a precise status, never 500.

=================================  ======  =============================
the provider (through LiteLLM)     status  ``errorCode``
=================================  ======  =============================
400, 422 (bad params, context      400     ``provider_bad_request``
window, content policy)
401, 403 (the workspace's key      424     ``provider_auth_failed``
was refused)
404 (unknown model)                404     ``provider_model_not_found``
413                                413     ``provider_payload_too_large``
429                                429     ``provider_rate_limited`` + ``Retry-After``
408, 504, our own timeout          504     ``provider_timeout``
5xx, connection refused/reset,     502     ``provider_unavailable``
an answer that does not parse
=================================  ======  =============================

A refused provider key is 424 (Failed Dependency), not 401/403: the caller's own credential
was fine, and an SDK that sees 401 would blame (and perhaps drop) the wrong key. The
workspace having no credential for the provider is 400 ``provider_not_configured``.

Messages keep the provider's explanation (useful: "maximum context length is ...") with
LiteLLM's prefixes removed, cut to :data:`MAX_DETAIL` characters, and with every secret
the call used replaced by ``[redacted]`` — a provider echoing the key it was sent must not
turn the proxy into a way to read it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from apiary.errors import (
    ApiaryError,
    ProviderAuthFailed,
    ProviderBadRequest,
    ProviderError,
    ProviderModelNotFound,
    ProviderNotConfigured,
    ProviderPayloadTooLarge,
    ProviderRateLimited,
    ProviderTimeout,
)

__all__ = [
    "MAX_DETAIL",
    "ProviderAuthFailed",
    "ProviderBadRequest",
    "ProviderError",
    "ProviderModelNotFound",
    "ProviderNotConfigured",
    "ProviderPayloadTooLarge",
    "ProviderRateLimited",
    "ProviderTimeout",
    "provider_error",
    "redact",
]

MAX_DETAIL = 500
_PREFIXES = re.compile(r"^(?:litellm\.\w+:\s*|\w+Error:\s*|\w+Exception\s*-\s*)+")


_BY_STATUS: dict[int, type[ProviderError]] = {
    400: ProviderBadRequest, 422: ProviderBadRequest, 401: ProviderAuthFailed,
    403: ProviderAuthFailed, 404: ProviderModelNotFound, 413: ProviderPayloadTooLarge,
    408: ProviderTimeout, 504: ProviderTimeout,
}
_TIMEOUT_NAMES = frozenset({"Timeout", "APITimeoutError", "TimeoutException", "ReadTimeout",
                            "ConnectTimeout"})


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``[redacted]``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def _detail(exc: BaseException, secrets: Sequence[str]) -> str:
    raw = str(getattr(exc, "message", None) or exc or type(exc).__name__)
    text = _PREFIXES.sub("", redact(raw, secrets)).strip() or type(exc).__name__
    return text[:MAX_DETAIL] + ("…" if len(text) > MAX_DETAIL else "")


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return True
    return any(cls.__name__ in _TIMEOUT_NAMES for cls in type(exc).__mro__)


def _retry_after(exc: BaseException) -> float:
    """The provider's ``Retry-After`` in seconds (1 when it sent none we can read)."""
    headers: Any = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        headers = getattr(exc, "litellm_response_headers", None)
    value = headers.get("retry-after") if headers is not None else None
    try:
        return max(1.0, min(float(value), 3600.0)) if value is not None else 1.0
    except (TypeError, ValueError):
        return 1.0


def provider_error(exc: BaseException, *, provider: str,
                   secrets: Sequence[str]) -> ApiaryError:
    """The :class:`ApiaryError` a failed LiteLLM call maps to (see the table above)."""
    if isinstance(exc, ApiaryError):
        return exc
    raw_status = getattr(exc, "status_code", None)
    status = raw_status if isinstance(raw_status, int) else None
    detail = _detail(exc, secrets)
    if status == 429:
        return ProviderRateLimited(f"{provider} is rate limiting this workspace: {detail}",
                                   retry_after=_retry_after(exc), provider=provider)
    if _is_timeout(exc):
        return ProviderTimeout(f"{provider} did not answer in time: {detail}",
                               provider=provider)
    mapped = _BY_STATUS.get(status) if status is not None else None
    if mapped is ProviderAuthFailed:
        return ProviderAuthFailed(
            f"{provider} refused the workspace's credential (HTTP {status}): {detail}",
            provider=provider)
    if mapped is not None:
        return mapped(f"{provider} answered HTTP {status}: {detail}", provider=provider)
    where = f"HTTP {status}" if status is not None else type(exc).__name__
    return ProviderError(f"{provider} failed ({where}): {detail}", provider=provider)


class CallAbandoned(ApiaryError):
    """The caller went away before the answer was complete (recorded on the trace only:
    nobody is left to receive it). 499, as proxies log it."""

    status = 499
    error_code = "client_disconnected"
