"""The one exception hierarchy of Apiary.

Every error Apiary raises on purpose derives from :class:`ApiaryError`. Each class knows
whether retrying the same operation can succeed (``retryable``), which HTTP status and
``errorCode`` it maps to when it reaches an API caller, and carries its context (project,
event id, queue depth, ...) in ``context`` so that logs and error bodies can name it::

    ApiaryError
    ├── ConfigurationError            settings that cannot work; says how to fix them
    ├── RequestError                  the caller sent something wrong (4xx, never retryable)
    │   ├── MalformedPayload          400 body does not decode as the declared format
    │   ├── InvalidRequest            400 decodes, but a field is missing or wrong
    │   │   └── OutboundUrlRefused    400 a URL the platform would call breaks the outbound
    │   │                             policy (``apiary.outbound``): not https, or internal
    │   ├── AuthenticationFailed      401 no credentials, or credentials not recognised
    │   │   ├── MfaRequired           401 password right; a TOTP or recovery code is needed
    │   │   └── ReauthenticationRequired  401 needs a session that logged in recently
    │   ├── PermissionDenied          403 recognised, but not allowed to do this
    │   │   └── EmailNotVerified      403 the account has not proven its email address yet
    │   ├── NotFound                  404 the addressed thing does not exist (for this tenant)
    │   ├── Conflict                  409 clashes with current state (duplicate name, last owner)
    │   ├── Gone                      410 existed, but expired or was used up (invitation, login)
    │   ├── MisdirectedRequest        421 the project is served by another data plane (its URL)
    │   ├── PayloadTooLarge           413 body (or its decompressed form) above the limit
    │   ├── UnsupportedMediaType      415 content type or encoding not understood
    │   └── TooManyAttempts           429 too many failed logins for this account; wait
    ├── Overloaded                    429/503 the pipeline cannot take more right now (retryable)
    │   ├── TooManyRequests           429 this replica is at its in-flight limit
    │   │   └── RateLimited           429 this credential is over its request rate
    │   ├── PipelineBackpressure      503 the durable queue is full or lagging
    │   └── Draining                  503 this data plane is draining (federation command)
    ├── QueueError                    JetStream unreachable or refused (retryable)
    ├── ControlPlaneUnavailable       503 the control plane (JWKS, token exchange) cannot be
    │                                 reached or answered nonsense (retryable)
    ├── StoreError                    ClickHouse refused or unreachable
    │   ├── StoreUnavailable          transient: connection, timeout, too many parts (retryable)
    │   └── StoreRejected             permanent: the data or the query is wrong
    ├── PoisonMessage                 a queued message that can never be written (dead-lettered)
    ├── SandboxError                  a user Python metric could not be scored (422)
    │   ├── SandboxCompileError       400 rejected before it runs: syntax, policy, imports, size
    │   ├── SandboxTimeout            ran past its wall-clock limit; its worker was killed
    │   ├── SandboxResourceLimit      hit a CPU, memory or output limit (``limit`` says which)
    │   ├── SandboxRuntimeError       the code raised, returned something unusable, or crashed
    │   │                             its worker process
    │   └── SandboxUnavailable        503 no sandbox worker could be started (retryable)
    ├── JudgeError                    an LLM-judge metric could not be scored (422)
    │   ├── JudgeUnavailable          503 the judge endpoint is unreachable or busy (retryable)
    │   └── JudgeRejected             the endpoint refused, or its answer holds no verdict
    ├── ProviderError                 502 an LLM provider behind the proxy failed (retryable)
    │   ├── ProviderBadRequest        400 the provider refused the request as malformed
    │   ├── ProviderAuthFailed        424 the workspace's provider key was refused
    │   ├── ProviderModelNotFound     404 the provider does not know the model
    │   ├── ProviderPayloadTooLarge   413 the provider refused the size
    │   ├── ProviderTimeout           504 the provider did not answer in time (retryable)
    │   └── ProviderRateLimited       429 the provider rate-limits the key (also Overloaded)
    ├── (RequestError) ProviderNotConfigured  400 no credential for that provider here
    └── DeliveryFailed                a notification could not be delivered to a channel;
        └── DeliveryRetryable         retried with back-off (connection, 408, 429, 5xx)
"""

from __future__ import annotations

from typing import Any, ClassVar


class ApiaryError(Exception):
    """Base of every error Apiary raises on purpose.

    ``retryable`` says whether the same operation may succeed if repeated later.
    ``status`` and ``error_code`` are what an HTTP caller sees; ``context`` names the
    things involved (``project_id``, ``event_id``, ``queue_depth``, ...).
    """

    retryable: ClassVar[bool] = False
    status: ClassVar[int] = 500
    error_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = {k: v for k, v in context.items() if v is not None}

    def __str__(self) -> str:
        if not self.context:
            return self.message
        detail = ", ".join(f"{k}={v!r}" for k, v in sorted(self.context.items()))
        return f"{self.message} ({detail})"

    def to_body(self) -> dict[str, Any]:
        """The JSON error body an API caller receives: ``message`` and ``errorCode``."""
        body: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        safe = {k: v for k, v in self.context.items() if k in _PUBLIC_CONTEXT}
        if safe:
            body["details"] = safe
        return body


# Context keys that may be echoed to API callers; everything else stays in logs.
_PUBLIC_CONTEXT = frozenset(
    {"field", "limit", "size", "content_type", "retry_after", "project_id", "event_id",
     "session_id", "rejected", "error_type", "line", "reason", "data_plane_url"}
)


class ConfigurationError(ApiaryError):
    """A setting that cannot work. The message says which one and how to fix it."""

    error_code = "configuration_error"


class RequestError(ApiaryError):
    """The caller sent something wrong. Never retryable as-is."""

    status = 400
    error_code = "bad_request"


class MalformedPayload(RequestError):
    status = 400
    error_code = "malformed_payload"


class InvalidRequest(RequestError):
    status = 400
    error_code = "invalid_request"


class OutboundUrlRefused(InvalidRequest):
    """A user-given URL the platform would call (a provider's ``api_base``, an OIDC issuer
    or endpoint, a webhook) breaks the outbound-URL policy (``apiary.outbound``): it is not
    https, carries credentials, or reaches a loopback, private, link-local or otherwise
    non-public address that the operator has not allow-listed. ``context`` holds ``url``,
    ``field`` and ``reason``."""

    error_code = "outbound_url_refused"


class AuthenticationFailed(RequestError):
    status = 401
    error_code = "unauthenticated"


class PermissionDenied(RequestError):
    status = 403
    error_code = "forbidden"


class EmailNotVerified(PermissionDenied):
    """The account has not proven its email address (a mailed link): until it does it owns
    nothing (no organizations, no invitations, no tokens) and nothing links to it."""

    error_code = "email_not_verified"


class MfaRequired(AuthenticationFailed):
    """The password was right, but the account has TOTP enrolled: send a code too."""

    status = 401
    error_code = "mfa_required"


class ReauthenticationRequired(AuthenticationFailed):
    """Managing keys, members, roles or the organization needs a logged-in user's session
    that authenticated within ``cp_recent_auth_s``: log in again (or
    ``POST /v1/auth/reauthenticate``). API keys and tokens can never do it."""

    status = 401
    error_code = "reauthentication_required"


class NotFound(RequestError):
    status = 404
    error_code = "not_found"


class Conflict(RequestError):
    """The request clashes with the current state: a duplicate name, the last owner, ..."""

    status = 409
    error_code = "conflict"


class Gone(RequestError):
    """The addressed thing existed but is no longer usable: expired, used or revoked."""

    status = 410
    error_code = "gone"


class MisdirectedRequest(RequestError):
    """The credential's project is served by another data plane (federation): the caller
    must send its data to ``data_plane_url``, which the body names (``wrong_data_plane``)."""

    status = 421
    error_code = "wrong_data_plane"

    def __init__(self, message: str, *, data_plane_url: str | None = None,
                 **context: Any) -> None:
        super().__init__(message, data_plane_url=data_plane_url, **context)
        self.data_plane_url = data_plane_url

    def to_body(self) -> dict[str, Any]:
        body = super().to_body()
        if self.data_plane_url is not None:
            body["data_plane_url"] = self.data_plane_url
        return body


class PayloadTooLarge(RequestError):
    status = 413
    error_code = "payload_too_large"


class UnsupportedMediaType(RequestError):
    status = 415
    error_code = "unsupported_media_type"


class TooManyAttempts(RequestError):
    """Too many failed logins for one account; it is locked for ``retry_after`` seconds.

    A request error, not :class:`Overloaded`: the system is fine, this caller must wait.
    """

    status = 429
    error_code = "too_many_attempts"

    def __init__(self, message: str, *, retry_after: float, **context: Any) -> None:
        super().__init__(message, retry_after=retry_after, **context)
        self.retry_after = retry_after


class Overloaded(ApiaryError):
    """The pipeline cannot take more now; the caller should retry after ``retry_after`` s."""

    retryable = True
    status = 503
    error_code = "overloaded"

    def __init__(self, message: str, *, retry_after: float = 1.0, **context: Any) -> None:
        super().__init__(message, retry_after=retry_after, **context)
        self.retry_after = retry_after


class TooManyRequests(Overloaded):
    status = 429
    error_code = "too_many_requests"


class RateLimited(TooManyRequests):
    """The caller's key is over its configured rate; ``retry_after`` says when it may go on."""

    error_code = "rate_limited"


class PipelineBackpressure(Overloaded):
    status = 503
    error_code = "backpressure"


class Draining(Overloaded):
    """This data plane was told to drain (federation): it finishes what it accepted and
    takes nothing new until the drain ends; another data plane or a later retry may."""

    status = 503
    error_code = "draining"


class QueueError(ApiaryError):
    """JetStream could not be reached or did not acknowledge in time."""

    retryable = True
    status = 503
    error_code = "queue_unavailable"


class ControlPlaneUnavailable(ApiaryError):
    """The data plane could not fetch the control plane's JWKS or exchange a key for a token.

    Not the caller's fault: their credential may be fine. Raised also when the control plane
    answers something the data plane cannot use (a token it cannot verify, a malformed JWKS),
    which is an operator's problem to fix, never a reason to trust the answer.
    """

    retryable = True
    status = 503
    error_code = "control_plane_unavailable"


class DataPlaneUnavailable(ApiaryError):
    """The control plane needs an answer from the data plane that serves a project (an
    alert's preview) and that data plane is not connected, or did not answer in time.

    The message names the data plane; the same request may succeed once it is back."""

    retryable = True
    status = 503
    error_code = "data_plane_unavailable"


class StoreError(ApiaryError):
    """ClickHouse refused or could not be reached."""

    status = 503
    error_code = "store_error"


class StoreUnavailable(StoreError):
    retryable = True
    error_code = "store_unavailable"


class StoreRejected(StoreError):
    retryable = False
    status = 500
    error_code = "store_rejected"


class PoisonMessage(ApiaryError):
    """A queued message that can never be written; it goes to the dead-letter store."""

    error_code = "poison_message"


class SandboxError(ApiaryError):
    """A user Python metric could not be scored (``apiary.dataplane.evaluation.sandbox``).

    Raised for the metric, never for Apiary itself: the evaluation records it as the
    metric's failure on that event. Not retryable unless a subclass says so, because the
    same code on the same event is expected to fail the same way again.
    """

    status = 422
    error_code = "metric_failed"


class SandboxCompileError(SandboxError):
    """The metric's source is rejected before it runs: a syntax error, a construct the
    restricted compiler refuses (``_`` names, ``try/except*``, ...), an import outside the
    allowlist, no entry point, or code above the size limit. Returned as 400 when a metric
    is defined."""

    status = 400
    error_code = "metric_compile_error"


class SandboxTimeout(SandboxError):
    """The metric ran past its wall-clock limit; its worker process was killed."""

    error_code = "metric_timeout"


class SandboxResourceLimit(SandboxError):
    """The metric hit an enforced limit; ``limit`` (in context) is ``cpu``, ``memory``,
    ``output`` or ``killed`` (the kernel ended the worker for a limit)."""

    error_code = "metric_resource_limit"


class SandboxRuntimeError(SandboxError):
    """The metric's code raised (``error_type`` names the exception), returned a value that
    is not a score, or crashed its worker process."""

    error_code = "metric_runtime_error"


class SandboxUnavailable(SandboxError):
    """No sandbox worker could be started or reached; the metric never ran."""

    retryable = True
    status = 503
    error_code = "sandbox_unavailable"


class JudgeError(ApiaryError):
    """An LLM-judge metric could not be scored (``apiary.dataplane.evaluation.judge``). Like
    :class:`SandboxError`, the metric's failure on that event unless retryable."""

    status = 422
    error_code = "metric_failed"


class JudgeUnavailable(JudgeError):
    """The judge endpoint could not be reached, timed out or answered 429/5xx."""

    retryable = True
    status = 503
    error_code = "judge_unavailable"


class JudgeRejected(JudgeError):
    """The judge endpoint refused the request, or its answer holds no usable verdict."""

    error_code = "judge_rejected"


# --- the LLM proxy's providers -------------------------------------------------------


class ProviderError(ApiaryError):
    """A provider call failed for a reason the caller may retry (502 by default)."""

    retryable = True
    status = 502
    error_code = "provider_unavailable"


class ProviderBadRequest(ProviderError):
    retryable = False
    status = 400
    error_code = "provider_bad_request"


class ProviderAuthFailed(ProviderError):
    retryable = False
    status = 424
    error_code = "provider_auth_failed"


class ProviderModelNotFound(ProviderError):
    retryable = False
    status = 404
    error_code = "provider_model_not_found"


class ProviderPayloadTooLarge(ProviderError):
    retryable = False
    status = 413
    error_code = "provider_payload_too_large"


class ProviderTimeout(ProviderError):
    status = 504
    error_code = "provider_timeout"


class ProviderRateLimited(ProviderError, Overloaded):
    """The provider is rate limiting the workspace's key; ``Retry-After`` says when to
    come back (the provider's own value when it sent one)."""

    status = 429
    error_code = "provider_rate_limited"


class ProviderNotConfigured(InvalidRequest):
    """The workspace has no credential for the provider the model names (400)."""

    error_code = "provider_not_configured"


# --- notifications (apiary.dataplane.notifications) -----------------------------------


class DeliveryFailed(ApiaryError):
    """A notification could not be delivered to one channel, for good: the receiver refused
    it (a 4xx other than 408/429, an SMTP 5xx, SES rejected it), the channel cannot work (no
    mail transport, a URL the outbound policy refuses), or its retries ran past
    ``notify_max_age_s``. ``context`` names ``channel_id``, ``channel_type`` and, when there
    was an answer, ``status``. The notifier dead-letters it with the message."""

    status = 502
    error_code = "delivery_failed"


class DeliveryRetryable(DeliveryFailed):
    """A delivery attempt failed in a way a later attempt may not: a connection error or
    timeout, 408, 429, 5xx, an SMTP 4xx, SES throttling. ``retry_after`` is the receiver's
    ``Retry-After`` in seconds when it sent one."""

    retryable = True
    status = 503
    error_code = "delivery_retryable"

    def __init__(self, message: str, *, retry_after: float | None = None,
                 **context: Any) -> None:
        super().__init__(message, retry_after=retry_after, **context)
        self.retry_after = retry_after
