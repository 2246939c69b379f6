"""Proxy calls as model events, published after the response and kept until JetStream has
them.

Every call that reached a provider (answered or failed) becomes one ``model`` event in the
caller's project (:class:`CallTrace`), published as a REST batch of kind ``api``, so the
writers store it like any other event: ``config.model``/``config.provider`` and the token
counts and ``cost`` in ``metadata`` fill the ``model``, ``provider``, ``*_tokens`` and
``cost`` columns.

:class:`TraceSink` takes the event off the request path: :meth:`TraceSink.submit` returns at
once and a task publishes it while (or after) the response goes out, so tracing adds no
latency. "Durable" means the usual pipeline guarantee, reached a little later: the event is
retried with back-off while JetStream is unreachable or full (for up to ``retry_for_s``),
under a ``Nats-Msg-Id`` fixed per event, so a retry after a lost acknowledgement is dropped
by JetStream's de-duplication rather than stored twice. Until the acknowledgement the event
lives only in this process: :meth:`TraceSink.drain` (called at shutdown) waits for those in
flight. An event too large for one message is published without its messages and outputs
(``metadata.truncated``) rather than lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from apiary.errors import Overloaded, PayloadTooLarge, QueueError
from apiary.event import API_KIND, Event, EventBatch, EventType, Tenant, new_event
from apiary.queue import WIRE_SCHEMA, EventPublisher

log = logging.getLogger("apiary.dataplane.evaluation.proxy")

DEFAULT_EVENT_NAME = "chat_completion"
DEFAULT_SOURCE = "llm-proxy"


def now_ms() -> float:
    return time.time_ns() / 1e6


@dataclass(frozen=True, slots=True)
class TraceLink:
    """Where the caller wants the model event: its session and parent (both optional: a
    call without a session gets a session of its own), name and source."""

    session_id: str | None = None
    parent_id: str | None = None
    event_name: str | None = None
    source: str | None = None


@dataclass
class CallTrace:
    """What is known about one proxied call; :meth:`event` turns it into the model event."""

    tenant: Tenant
    caller: str
    provider: str
    model: str
    credential_id: str
    messages: list[dict[str, Any]]
    hyperparameters: dict[str, Any]
    stream: bool
    link: TraceLink = field(default_factory=TraceLink)
    user_metadata: dict[str, Any] = field(default_factory=dict)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    start_ms: float = field(default_factory=now_ms)
    end_ms: float | None = None
    first_token_ms: float | None = None
    response: dict[str, Any] | None = None
    cost: float | None = None
    error: str | None = None
    error_code: str | None = None
    status: int | None = None

    def succeed(self, response: dict[str, Any], cost: float | None) -> None:
        self.end_ms = now_ms()
        self.response = response
        self.cost = cost

    def fail(self, message: str, *, error_code: str, status: int | None) -> None:
        self.end_ms = now_ms()
        self.error = message
        self.error_code = error_code
        self.status = status

    def event(self) -> Event:
        end = self.end_ms if self.end_ms is not None else now_ms()
        session_id = self.link.session_id or str(uuid.uuid4())
        inputs: dict[str, Any] = {"chat_history": self.messages}
        if "tools" in self.hyperparameters:
            inputs["tools"] = self.hyperparameters["tools"]
        config = {"provider": self.provider, "model": self.model, "stream": self.stream,
                  "hyperparameters": {k: v for k, v in self.hyperparameters.items()
                                      if k != "tools"}}
        metadata: dict[str, Any] = {**self.user_metadata, **self._metadata()}
        return new_event(
            event_id=self.event_id, session_id=session_id,
            parent_id=self.link.parent_id or session_id, event_type=EventType.MODEL.value,
            event_name=self.link.event_name or DEFAULT_EVENT_NAME,
            source=self.link.source or DEFAULT_SOURCE, config=config, inputs=inputs,
            outputs=_outputs(self.response), error=self.error, start_time=self.start_ms,
            end_time=end, duration=max(0.0, end - self.start_ms), metadata=metadata,
        )

    def _metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"proxy": {"caller": self.caller,
                                          "credential_id": self.credential_id}}
        usage = (self.response or {}).get("usage") or {}
        for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
            if isinstance(usage.get(name), int):
                meta[name] = usage[name]
        if self.cost is not None:
            meta["cost"] = self.cost
        if self.response is not None:
            meta["response_id"] = self.response.get("id")
            meta["response_model"] = self.response.get("model")
            choices = self.response.get("choices") or []
            if choices:
                meta["finish_reason"] = choices[0].get("finish_reason")
        if self.first_token_ms is not None:
            meta["time_to_first_token_ms"] = round(self.first_token_ms - self.start_ms, 3)
        if self.error is not None:
            meta["error_code"] = self.error_code
            if self.status is not None:
                meta["status_code"] = self.status
        return meta


def _outputs(response: dict[str, Any] | None) -> dict[str, Any]:
    """The first choice's message (role, content, tool calls) and, for ``n`` > 1, all."""
    if not response:
        return {}
    choices = [c for c in response.get("choices") or [] if isinstance(c, dict)]
    if not choices:
        return {}
    messages = [{k: v for k, v in (c.get("message") or {}).items() if v is not None}
                for c in choices]
    outputs: dict[str, Any] = dict(messages[0])
    outputs.setdefault("role", "assistant")
    if choices[0].get("finish_reason") is not None:
        outputs["finish_reason"] = choices[0]["finish_reason"]
    if len(messages) > 1:
        outputs["choices"] = messages
    return outputs


def _slim(event: Event) -> Event:
    """The event without its (large) messages and outputs, marked as such."""
    slim: Event = {**event}
    slim["inputs"] = {}
    slim["outputs"] = {}
    slim["metadata"] = {**event["metadata"], "truncated": True}
    return slim


class TraceSink:
    """Publishes model events in the background, retrying until JetStream has them."""

    def __init__(self, publisher: EventPublisher, *, retry_for_s: float = 600.0,
                 first_backoff_s: float = 0.1, max_backoff_s: float = 5.0) -> None:
        self._publisher = publisher
        self._retry_for_s = retry_for_s
        self._first_backoff_s = first_backoff_s
        self._max_backoff_s = max_backoff_s
        self._tasks: set[asyncio.Task[bool]] = set()
        self.published = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Events submitted and not yet acknowledged (or given up on)."""
        return len(self._tasks)

    def submit(self, tenant: Tenant, event: Event) -> None:
        """Publish ``event`` into ``tenant``'s project soon; returns immediately."""
        task = asyncio.get_running_loop().create_task(self._deliver(tenant, event))
        self._tasks.add(task)  # a strong reference: the loop keeps only weak ones
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float | None = None) -> bool:
        """Wait for every submitted event; False if some were still pending at the
        timeout (they keep trying in the background)."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        return not pending

    async def _deliver(self, tenant: Tenant, event: Event) -> bool:
        batch: EventBatch = {"schema": WIRE_SCHEMA, "kind": API_KIND, "tenant": tenant,
                             "version": time.time_ns(), "events": [event]}
        digest = hashlib.blake2b(f"{tenant['project_id']}\x00{event['event_id']}".encode(),
                                 digest_size=16, person=b"apiary-proxy-v1")
        msg_id = digest.hexdigest()
        deadline = time.monotonic() + self._retry_for_s
        backoff = self._first_backoff_s
        while True:
            try:
                await self._publisher.publish(batch, msg_id=msg_id)
                self.published += 1
                return True
            except PayloadTooLarge:
                if batch["events"][0]["metadata"].get("truncated"):
                    return self._give_up(event, tenant, "too large even without messages")
                batch = {**batch, "events": [_slim(event)]}
                continue
            except (QueueError, Overloaded) as exc:
                if time.monotonic() + backoff > deadline:
                    return self._give_up(event, tenant, str(exc))
                log.warning("proxy trace not yet published; retrying",
                            extra={"event_id": event["event_id"],
                                   "project_id": tenant["project_id"], "error": str(exc)})
            except Exception as exc:  # a bug must not take the sink down; say so loudly
                return self._give_up(event, tenant, f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)

    def _give_up(self, event: Event, tenant: Tenant, reason: str) -> bool:
        self.dropped += 1
        log.error("proxy trace dropped", extra={"event_id": event["event_id"],
                                                "project_id": tenant["project_id"],
                                                "error": reason})
        return False
