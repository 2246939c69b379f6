"""Running the proxy outside an HTTP request: building a :class:`ChatProxy` from settings, and
the in-process client the evaluators' LLM judge can use instead of HTTP.

In-process is how a judge should call the proxy: the tenant is the scored event's (its
workspace's provider key is used, the call is traced into its project), and no credential
is needed — over HTTP one service key would make every judge call use, and be traced into,
that key's own workspace and project.

Judge calls are traced with source :data:`JUDGE_SOURCE`; whoever triggers online evaluators
on new model events must skip that source, or a judge would end up judging its own calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from apiary.dataplane.db import DataPlaneDatabase, LazyDatabase
from apiary.dataplane.evaluation.judge import JUDGE_SOURCE
from apiary.dataplane.evaluation.proxy.envelope import Envelope, envelope_from_settings
from apiary.dataplane.evaluation.proxy.request import ChatCompletionRequest
from apiary.dataplane.evaluation.proxy.service import Caller, ChatProxy, Completion
from apiary.dataplane.evaluation.proxy.tracing import TraceLink, TraceSink
from apiary.errors import ApiaryError, JudgeRejected, JudgeUnavailable
from apiary.event import Tenant
from apiary.outbound import OutboundPolicy
from apiary.queue import EventPublisher
from apiary.settings import ApiarySettings

JUDGE_SUBJECT = "service:evaluator"


def open_chat_proxy(settings: ApiarySettings, publisher: EventPublisher, *,
                    database: Callable[[], DataPlaneDatabase] | None = None) -> ChatProxy:
    """A :class:`ChatProxy` on ``settings``' dpdb and envelope key and outbound-URL policy,
    tracing through ``publisher``. dpdb and the envelope are opened on first use."""
    if database is None:
        database = LazyDatabase(settings.dp_database).get
    envelope: list[Envelope] = []

    def get_envelope() -> Envelope:
        if not envelope:
            envelope.append(envelope_from_settings(settings))
        return envelope[0]

    return ChatProxy(database=database, envelope=get_envelope, sink=TraceSink(publisher),
                     timeout_s=settings.proxy_timeout_s,
                     outbound=OutboundPolicy.from_settings(settings))


class ProxyJudgeClient:
    """The evaluators' ``JudgeClient`` (``apiary.dataplane.evaluation.judge``) over the proxy,
    in-process. Failures the caller may retry (rate limits, timeouts, provider outages) are
    :class:`JudgeUnavailable`; the rest (no credential, key refused, bad request, unknown
    model) :class:`JudgeRejected`."""

    def __init__(self, proxy: ChatProxy, *, event_name: str = "llm_judge") -> None:
        self._proxy = proxy
        self._event_name = event_name

    async def complete(self, *, model: str, messages: Sequence[Mapping[str, str]],
                       tenant: Tenant, temperature: float | None = None) -> str:
        fields: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages]}
        if temperature is not None:
            fields["temperature"] = temperature
        link = TraceLink(event_name=self._event_name, source=JUDGE_SOURCE)
        try:
            answer = await self._proxy.complete(Caller(tenant, JUDGE_SUBJECT),
                                                ChatCompletionRequest(**fields), link)
        except ApiaryError as exc:
            kind = JudgeUnavailable if exc.retryable else JudgeRejected
            raise kind(f"the LLM proxy failed: {exc.message}", error_type=exc.error_code,
                       ) from None
        assert isinstance(answer, Completion)  # never a stream: none was asked for
        try:
            content = answer.body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise JudgeRejected("the provider's answer has no message") from None
        if not isinstance(content, str):
            raise JudgeRejected("the judge's answer has no text content")
        return content

    async def aclose(self) -> None:
        """Wait (briefly) for the traces of finished calls to be published."""
        await self._proxy.sink.drain(10.0)
