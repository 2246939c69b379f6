"""A metric's score: what its function may return, and what the pool hands back.

The worker turns the function's return value into a :class:`MetricResult` with
:func:`normalize` (HoneyHive's ``EvaluatorMetricResult.from_raw`` rules). The parent does
not trust that work: :func:`from_reply` re-validates every field of what a worker sent,
because a worker runs user code and may have been subverted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Scalar = bool | int | float | str
_INT_RANGE = (-(2**63), 2**64 - 1)  # what the wire format (orjson) carries exactly
MAX_EXTRAS = 64
MAX_LOG_CHARS = 8192


class InvalidResult(ValueError):
    """The metric returned something that is not a score."""


@dataclass(frozen=True, slots=True)
class MetricResult:
    """One metric's verdict on one event.

    ``score`` is None when the metric returned None (ran, but gave no score). ``extras``
    are the further scalar entries of a returned dict; ``logs`` is what the metric printed
    (truncated); ``duration_ms`` is the time the worker spent in the metric's code.
    """

    score: Scalar | None
    explanation: str | None = None
    extras: Mapping[str, Scalar] = field(default_factory=dict)
    logs: str = ""
    duration_ms: float = 0.0

    def to_metric_attrs(self, name: str) -> dict[str, Any]:
        """HoneyHive's ``metrics`` shape: ``name``, ``name_explanation``, ``name_<extra>``."""
        attrs: dict[str, Any] = {}
        if self.score is not None:
            attrs[name] = self.score
        if self.explanation is not None:
            attrs[f"{name}_explanation"] = self.explanation
        for key, value in self.extras.items():
            attrs[f"{name}_{key}"] = value
        return attrs


def _scalar(value: Any, what: str) -> Scalar:
    """``value`` as a JSON-safe scalar, or InvalidResult."""
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        value = value.item()  # numpy scalars (np.float64, np.int64, np.bool_)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            raise InvalidResult(f"{what} is an integer too large to store")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidResult(f"{what} is not a finite number ({value!r})")
        return float(value)
    if isinstance(value, str):
        return str(value)
    raise InvalidResult(f"{what} must be a number, a bool or a string, "
                        f"not {type(value).__name__}")


def normalize(raw: Any) -> tuple[Scalar | None, str | None, dict[str, Scalar]]:
    """(score, explanation, extras) from what a metric function returned."""
    if isinstance(raw, (list, tuple)) and len(raw) == 1:
        raw = raw[0]  # HoneyHive's legacy one-element-list form
    if raw is None:
        return None, None, {}
    if isinstance(raw, dict):
        score = None if raw.get("score") is None else _scalar(raw["score"], "'score'")
        explanation = raw.get("explanation")
        if explanation is not None and not isinstance(explanation, str):
            explanation = str(explanation)
        extras: dict[str, Scalar] = {}
        for key, value in raw.items():
            if key in ("score", "explanation") or value is None:
                continue
            if not isinstance(key, str):
                raise InvalidResult("keys of a returned dict must be strings")
            try:
                extras[key] = _scalar(value, f"{key!r}")
            except InvalidResult:
                continue  # HoneyHive drops non-scalar extras too; the score stays strict
        if len(extras) > MAX_EXTRAS:
            raise InvalidResult(f"a returned dict may have at most {MAX_EXTRAS} extra entries")
        return score, explanation, extras
    return _scalar(raw, "the returned value"), None, {}


def from_reply(reply: Mapping[str, Any]) -> MetricResult:
    """Validate a worker's success reply into a MetricResult, or raise InvalidResult."""
    score = reply.get("score")
    explanation = reply.get("explanation")
    extras = reply.get("extras", {})
    logs = reply.get("logs", "")
    duration = reply.get("duration_ms", 0.0)
    if score is not None and not isinstance(score, (bool, int, float, str)):
        raise InvalidResult("worker sent a score of the wrong type")
    if explanation is not None and not isinstance(explanation, str):
        raise InvalidResult("worker sent an explanation of the wrong type")
    if not isinstance(extras, dict) or len(extras) > MAX_EXTRAS or not all(
            isinstance(k, str) and isinstance(v, (bool, int, float, str))
            for k, v in extras.items()):
        raise InvalidResult("worker sent malformed extras")
    if not isinstance(logs, str) or len(logs) > MAX_LOG_CHARS + 64:
        raise InvalidResult("worker sent malformed logs")
    if not isinstance(duration, (int, float)) or isinstance(duration, bool):
        raise InvalidResult("worker sent a malformed duration")
    if isinstance(score, float) and not math.isfinite(score):
        raise InvalidResult("worker sent a non-finite score")
    return MetricResult(score=score, explanation=explanation, extras=dict(extras), logs=logs,
                        duration_ms=float(duration))
