"""LLM-judge metrics: a prompt rendered from the event, one chat completion, a parsed verdict.

The judge talks to an OpenAI-compatible ``POST {base}/chat/completions`` through the
:class:`JudgeClient` protocol. :class:`OpenAIJudgeClient` is the HTTP implementation; by
default it calls the data plane's own LLM proxy (``APIARY_EVALUATOR_JUDGE_URL``, else
``<base URL>/v1``), which routes to the provider with the workspace's keys and traces the
call. Any OpenAI-compatible server works the same way.

Prompt. The metric's ``criteria`` is a template: ``{{inputs}}``, ``{{outputs}}``,
``{{ground_truth}}``, ``{{metadata.user_id}}``, ``{{event_name}}`` ... (a field of the event
or a dotted path into it, spaces allowed inside the braces) is replaced by the value, as
text when it is a string, else as JSON; an unknown path by an empty string. A system
message asks for ``{"score": ..., "explanation": "..."}`` of the metric's return type.

Verdict. The reply's JSON object (the first ``{...}`` in it), else ``[[value]]``, else (for
numbers and booleans) the first number or yes/no word. ``boolean`` → bool, ``float`` →
number (clamped to ``model_params.scale`` when given as ``{min, max}`` or a maximum),
``categorical`` → one of ``model_params.categories``, ``string`` → text.

Errors: :class:`~apiary.errors.JudgeUnavailable` (connection, timeout, 408/409/429/5xx:
retry later) and :class:`~apiary.errors.JudgeRejected` (any other refusal, or a reply
with no usable verdict: the metric fails on this event).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import httpx
import orjson

from apiary.dataplane.evaluation.metrics import MetricSpec
from apiary.dataplane.evaluation.sandbox import MetricResult
from apiary.errors import JudgeRejected, JudgeUnavailable
from apiary.event import Tenant

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_\-]+)*)\s*\}\}")
_BRACKETED = re.compile(r"\[\[\s*(.+?)\s*\]\]", re.S)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_TRUE = frozenset({"true", "yes", "pass", "passed", "correct", "1"})
_FALSE = frozenset({"false", "no", "fail", "failed", "incorrect", "0"})
_RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
MAX_REPLY_CHARS = 64 * 1024


#: The ``source`` of the model events that judge calls leave behind: online evaluators
#: never score them, or a judge would end up judging its own calls.
JUDGE_SOURCE = "apiary-judge"


class JudgeClient(Protocol):
    """One chat completion; returns the assistant's text."""

    async def complete(self, *, model: str, messages: Sequence[Mapping[str, str]],
                       tenant: Tenant, temperature: float | None = None) -> str: ...


class OpenAIJudgeClient:
    """:class:`JudgeClient` over an OpenAI-compatible HTTP endpoint."""

    def __init__(self, base_url: str, *, api_key: str | None = None,
                 timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout_s
        self._client: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def complete(self, *, model: str, messages: Sequence[Mapping[str, str]],
                       tenant: Tenant, temperature: float | None = None) -> str:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        headers = {"X-Apiary-Project": tenant["project_id"],
                   "X-Apiary-Workspace": tenant["workspace_id"]}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in messages]}
        if temperature is not None:
            body["temperature"] = temperature
        url = f"{self.base_url}/chat/completions"
        try:
            response = await self._client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise JudgeUnavailable("the judge endpoint could not be reached", url=url,
                                   error=str(exc) or type(exc).__name__) from None
        status = response.status_code
        if status >= 500 or status in _RETRYABLE_STATUS:
            raise JudgeUnavailable(f"the judge endpoint answered HTTP {status}", url=url)
        if status >= 400:
            raise JudgeRejected(f"the judge endpoint refused the request (HTTP {status}): "
                                f"{response.text[:300]}", url=url)
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeRejected("the judge endpoint's answer is not a chat completion",
                                url=url) from None
        if not isinstance(content, str):
            raise JudgeRejected("the judge's answer has no text content", url=url)
        return content[:MAX_REPLY_CHARS]


def _lookup(event: Mapping[str, Any], path: str) -> Any:
    if path == "event":
        return event
    if path == "ground_truth":
        feedback = event.get("feedback")
        return feedback.get("ground_truth") if isinstance(feedback, Mapping) else None
    value: Any = event
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def render(template: str, event: Mapping[str, Any]) -> str:
    """``template`` with every ``{{path}}`` replaced by the event's value (module doc)."""
    def replace(match: re.Match[str]) -> str:
        value = _lookup(event, match.group(1))
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        return orjson.dumps(value, default=str).decode()
    return _PLACEHOLDER.sub(replace, template)


def _format_instruction(metric: MetricSpec) -> str:
    kind = metric["return_type"]
    params = metric["model_params"]
    if kind == "boolean":
        shape = "true or false"
    elif kind == "categorical":
        shape = "one of " + ", ".join(orjson.dumps(c).decode()
                                      for c in params.get("categories") or [])
    elif kind == "string":
        shape = "a short text"
    else:
        scale = params.get("scale")
        shape = f"a number on the scale {orjson.dumps(scale).decode()}" if scale else "a number"
    return ("You are an evaluator. Judge the data below by the criteria. Answer with a JSON "
            f'object only: {{"score": <{shape}>, "explanation": "<one or two sentences>"}}.')


def messages_for(metric: MetricSpec, event: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"role": "system", "content": _format_instruction(metric)},
            {"role": "user", "content": render(metric["criteria"] or "", event)}]


def model_for(metric: MetricSpec, default: str) -> str:
    """``model_params.model_name``, prefixed with ``model_provider/`` (LiteLLM's routing
    form) unless it names its provider already."""
    params = metric["model_params"]
    name = str(params.get("model_name") or params.get("model") or default)
    provider = params.get("model_provider")
    if provider and "/" not in name:
        return f"{provider}/{name}"
    return name


def _json_object(text: str) -> dict[str, Any] | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        found = orjson.loads(text[start:end + 1])
    except orjson.JSONDecodeError:
        return None
    return found if isinstance(found, dict) else None


def _bounds(scale: Any) -> tuple[float | None, float | None]:
    if isinstance(scale, Mapping):
        low, high = scale.get("min"), scale.get("max")
        return (float(low) if isinstance(low, (int, float)) else None,
                float(high) if isinstance(high, (int, float)) else None)
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        return None, float(scale)
    return None, None


def _as_score(raw: Any, metric: MetricSpec) -> bool | float | str:
    kind = metric["return_type"]
    params = metric["model_params"]
    text = raw.strip() if isinstance(raw, str) else raw
    if kind == "boolean":
        if isinstance(text, bool):
            return text
        word = str(text).strip().strip(".").lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise JudgeRejected(f"the judge's verdict {str(raw)[:60]!r} is not true or false")
    if kind in ("string", "categorical"):
        label = text if isinstance(text, str) else orjson.dumps(text).decode()
        categories = [str(c) for c in params.get("categories") or []]
        if kind == "categorical" and categories:
            for category in categories:
                if category.lower() == label.lower():
                    return category
            raise JudgeRejected(f"the judge's verdict {label[:60]!r} is not one of the "
                                "metric's categories")
        return label
    if isinstance(text, bool) or not isinstance(text, (int, float, str)):
        raise JudgeRejected(f"the judge's verdict {str(raw)[:60]!r} is not a number")
    if isinstance(text, str):
        match = _NUMBER.search(text)
        if match is None:
            raise JudgeRejected(f"the judge's verdict {text[:60]!r} is not a number")
        text = float(match.group(0))
    number = float(text)
    if not math.isfinite(number):
        raise JudgeRejected("the judge's verdict is not a finite number")
    low, high = _bounds(params.get("scale"))
    if low is not None:
        number = max(number, low)
    if high is not None:
        number = min(number, high)
    return number


def parse_verdict(reply: str, metric: MetricSpec) -> MetricResult:
    """The judge's reply as a score of ``metric`` (module docstring); JudgeRejected if none."""
    found = _json_object(reply)
    explanation: str | None = None
    if found is not None and "score" in found:
        raw: Any = found["score"]
        if found.get("explanation") is not None:
            explanation = str(found["explanation"])[:4000]
    else:
        bracketed = _BRACKETED.search(reply)
        raw = bracketed.group(1) if bracketed else reply
        explanation = reply.strip()[:4000] or None
    if raw is None:
        raise JudgeRejected("the judge gave no score")
    return MetricResult(score=_as_score(raw, metric), explanation=explanation)


async def judge(client: JudgeClient, metric: MetricSpec, event: Mapping[str, Any],
                tenant: Tenant, *, default_model: str) -> MetricResult:
    """Score ``event`` with the LLM-judge ``metric``."""
    temperature = metric["model_params"].get("temperature")
    reply = await client.complete(
        model=model_for(metric, default_model), messages=messages_for(metric, event),
        tenant=tenant,
        temperature=float(temperature) if isinstance(temperature, (int, float)) else 0.0)
    return parse_verdict(reply, metric)


__all__ = ["JudgeClient", "OpenAIJudgeClient", "judge", "messages_for", "model_for",
           "parse_verdict", "render"]
