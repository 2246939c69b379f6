"""What the evaluation service needs of a metric definition: :class:`MetricSpec`.

Metric definitions live in the control plane (evaluators with immutable numbered versions
and a deployed one, :mod:`apiary.control.config.evaluators`). The data plane copies the
parts it runs into every evaluation task, so that an evaluator never looks a definition
up: a task scores with exactly the version it names, even if the metric was redeployed
since.

A metric runs **online** (on new events, after they are written) when its evaluator is
enabled (``enabled_in_prod``), has a deployed version, is not ``human`` (reviewers score
those) and samples more than 0 % of events. Its filters are the export filter language
(``filters.filterArray`` of the version).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from apiary.errors import InvalidRequest, NotFound

#: Kinds the service scores by itself; ``human`` metrics are scored by reviewers.
AUTO_KINDS = frozenset({"python", "llm"})
#: The kind scored by an LLM judge, which spends the workspace's provider key: whoever
#: defines, deploys or runs one needs ``proxy:use`` (``apiary.dataplane.evaluation.routes``).
JUDGE_KIND = "llm"


class MetricSpec(TypedDict):
    """One version of one metric, as a task carries it."""

    id: str  # the evaluator's id (stable across versions and renames)
    name: str  # the key its score gets in the event's ``metrics``
    kind: str  # python | llm | human
    version: int
    code: str | None  # python: the metric's source
    criteria: str | None  # llm: the judge prompt (template)
    return_type: str  # float | boolean | string | categorical
    sampling_pct: float
    filters: list[dict[str, Any]]  # export filters, all must match
    model_params: dict[str, Any]


def _version(evaluator: Mapping[str, Any], number: int | None) -> Mapping[str, Any]:
    versions: Sequence[Mapping[str, Any]] = evaluator.get("versions") or []
    if not versions:
        raise NotFound("the metric has no version")
    if number is None:
        number = evaluator.get("deployed_version") or max(int(v["version"]) for v in versions)
    for version in versions:
        if int(version["version"]) == number:
            return version
    raise NotFound(f"version {number} of the metric not found", field="version")


def filter_array(filters: Any) -> list[dict[str, Any]]:
    """The filter list of a version's ``filters`` (``{"filterArray": [...]}`` or a list)."""
    if isinstance(filters, Mapping):
        filters = filters.get("filterArray") or []
    if not isinstance(filters, list) or not all(isinstance(f, Mapping) for f in filters):
        raise InvalidRequest("a metric's filters must be a list of filter objects",
                             field="filters")
    return [dict(f) for f in filters]


def spec_of(evaluator: Mapping[str, Any], version: int | None = None) -> MetricSpec:
    """The spec of ``version`` (default: the deployed one, else the latest) of an evaluator
    as the control plane's API returns it."""
    chosen = _version(evaluator, version)
    return {
        "id": str(evaluator["id"]),
        "name": str(evaluator["name"]),
        "kind": str(evaluator["type"]),
        "version": int(chosen["version"]),
        "code": chosen.get("code"),
        "criteria": chosen.get("criteria"),
        "return_type": str(chosen.get("return_type") or "float"),
        "sampling_pct": float(chosen.get("sampling_pct", 100.0)),
        "filters": filter_array(chosen.get("filters") or []),
        "model_params": dict(chosen.get("model_params") or {}),
    }


def online_specs(evaluators: Sequence[Mapping[str, Any]]) -> list[MetricSpec]:
    """The deployed versions of the evaluators that run online (module docstring)."""
    specs: list[MetricSpec] = []
    for evaluator in evaluators:
        if not evaluator.get("enabled") or evaluator.get("deployed_version") is None:
            continue
        if evaluator.get("type") not in AUTO_KINDS:
            continue
        try:
            spec = spec_of(evaluator, int(evaluator["deployed_version"]))
        except (NotFound, InvalidRequest):
            continue  # a definition the control plane should not have: skip, never fail
        if spec["sampling_pct"] > 0:
            specs.append(spec)
    return specs


__all__ = ["AUTO_KINDS", "JUDGE_KIND", "MetricSpec", "filter_array", "online_specs", "spec_of"]
