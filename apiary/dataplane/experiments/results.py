"""Experiment results from stored events: pass/fail, per-datapoint results, comparisons.

The inputs are what ClickHouse computed for a run (:meth:`EventStore.run_result_rows`:
per metric the aggregate and every value, the run's sessions, its event names and types);
nothing here trusts a summary a client sent. Output shapes are HoneyHive's
(``GetExperimentRunResultResponse``, ``GetExperimentRunCompareResponse``), including what
the SDK's ``evaluate()`` needs beyond its models: ``metrics.details`` is always a list,
every detail has a ``values`` list, every datapoint a ``metrics`` list.

Pass/fail. A metric's **pass rule** comes from the run's ``passing_ranges`` (by metric
name), else from the metric's definition (its ``threshold``), else — for a metric whose
values are all booleans — "passes when true"; other metrics without a rule are not
judged. A rule is ``{min?, max?}`` (inclusive bounds on the number), ``{pass_when}`` (a
boolean or number the value must equal) or ``{passing_categories: [...]}`` (labels). A
value a rule cannot read (a label under a numeric range) fails. A datapoint (one session
of the run) passes when none of its judged values fails; the top-level ``passed`` and
``failed`` list datapoint ids (the session id when the session names no datapoint).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from apiary.errors import InvalidRequest

EXPLANATION_SUFFIX = "_explanation"


@dataclass(frozen=True, slots=True)
class PassRule:
    """When one value of a metric passes (module docstring)."""

    min: float | None = None
    max: float | None = None
    pass_when: bool | float | None = None
    passing_categories: tuple[str, ...] | None = None

    @classmethod
    def of(cls, raw: Any, where: str = "passing_ranges") -> PassRule | None:
        """A rule from a ``passing_ranges`` entry or a metric ``threshold`` (None if it
        states nothing); InvalidRequest if it is not one."""
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise InvalidRequest(f"{where}: a pass rule is an object such as "
                                 '{"min": 0.5, "max": 1}', field=where)
        def number(key: str) -> float | None:
            value = raw.get(key)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not \
                    math.isfinite(value):
                raise InvalidRequest(f"{where}.{key} must be a finite number", field=where)
            return float(value)
        when = raw.get("pass_when")
        if when is not None and (not isinstance(when, (bool, int, float))):
            raise InvalidRequest(f"{where}.pass_when must be a boolean or a number",
                                 field=where)
        categories = raw.get("passing_categories")
        if categories is not None and (not isinstance(categories, list) or not all(
                isinstance(c, str) for c in categories)):
            raise InvalidRequest(f"{where}.passing_categories must be a list of strings",
                                 field=where)
        rule = cls(number("min"), number("max"), when,
                   tuple(categories) if categories is not None else None)
        if rule.min is not None and rule.max is not None and rule.min > rule.max:
            raise InvalidRequest(f"{where}: min is above max", field=where)
        if rule == cls():
            return None
        return rule

    def passes(self, value: Any, number: float | None) -> bool:
        if self.passing_categories is not None:
            return str(value) in self.passing_categories if value is not None else False
        if self.pass_when is not None:
            if isinstance(self.pass_when, bool):
                return number is not None and (number != 0) == self.pass_when
            return number is not None and number == float(self.pass_when)
        if number is None:
            return False
        return ((self.min is None or number >= self.min)
                and (self.max is None or number <= self.max))

    def passing_range(self) -> dict[str, float | None] | None:
        if self.min is None and self.max is None:
            return None
        return {"min": self.min, "max": self.max}


BOOLEAN_RULE = PassRule(pass_when=True)


def current_version(evaluator: Mapping[str, Any]) -> dict[str, Any]:
    """An evaluator's (as the control plane lists it) deployed version, else its latest."""
    versions = evaluator["versions"]
    deployed = evaluator.get("deployed_version")
    for version in versions:
        if version["version"] == deployed:
            return dict(version)
    return dict(versions[-1])


def version_threshold(version: Mapping[str, Any]) -> Any:
    """What an evaluator version states as its threshold: ``model_params.threshold``, else
    its ``pass_min``/``pass_max`` as ``{min, max}``, else None."""
    params = version.get("model_params") or {}
    threshold = params.get("threshold")
    if threshold is None and (version.get("pass_min") is not None
                              or version.get("pass_max") is not None):
        threshold = {"min": version.get("pass_min"), "max": version.get("pass_max")}
    return threshold


def pass_rules_from_evaluators(evaluators: Sequence[Mapping[str, Any]]
                               ) -> dict[str, PassRule]:
    """``{metric name: pass rule}`` of the evaluators that state one (run results): the
    threshold of each one's current version; one that is not a rule is skipped."""
    rules: dict[str, PassRule] = {}
    for evaluator in evaluators:
        if not evaluator.get("versions"):
            continue
        try:
            rule = PassRule.of(version_threshold(current_version(evaluator)),
                               where="threshold")
        except InvalidRequest:
            continue
        if rule is not None:
            rules[str(evaluator["name"])] = rule
    return rules


def _parse(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _output_value(parsed: Any, number: float | None) -> bool | float | int | None:
    """What a datapoint's metric ``value`` shows: booleans and numbers as they are,
    numeric strings as numbers, anything else ``None`` (its text is in ``text``)."""
    if isinstance(parsed, bool) or (isinstance(parsed, (int, float))
                                    and math.isfinite(parsed)):
        return parsed
    return number


@dataclass(frozen=True, slots=True)
class _Point:
    session_id: str
    datapoint_id: str
    event_id: str
    parsed: Any
    number: float | None


def _group_is_explanation(group: Mapping[str, Any], names: set[tuple[str, str, str]]) -> bool:
    name = str(group["metric_name"])
    return name.endswith(EXPLANATION_SUFFIX) and (
        name[: -len(EXPLANATION_SUFFIX)], group["event_name"], group["event_type"]) in names


def build_result(run: Mapping[str, Any], rows: Mapping[str, list[dict[str, Any]]],
                 aggregate: str, rules: Mapping[str, PassRule]) -> dict[str, Any]:
    """The ``GET /v1/runs/{id}/result`` body from a run object and its ClickHouse rows."""
    sessions = rows["sessions"]
    order = {s["session_id"]: i for i, s in enumerate(sessions)}
    datapoint_of = {s["session_id"]: (s["datapoint_id"] or None) for s in sessions}
    per_session: dict[str, list[dict[str, Any]]] = {s["session_id"]: [] for s in sessions}
    failed_sessions: set[str] = set()
    names = {(str(g["metric_name"]), g["event_name"], g["event_type"]) for g in rows["metrics"]}
    details = []
    for group in rows["metrics"]:
        if _group_is_explanation(group, names):
            continue
        name = str(group["metric_name"])
        points = sorted(
            (_Point(p[0], p[1], p[2], _parse(p[3]), _finite(p[4])) for p in group["points"]),
            key=lambda p: (order.get(p.session_id, len(order)), p.event_id))
        booleans = bool(points) and all(isinstance(p.parsed, bool) for p in points)
        numeric = any(p.number is not None for p in points)
        rule = rules.get(name) or (BOOLEAN_RULE if booleans else None)
        passed_ids: list[str] = []
        failed_ids: list[str] = []
        verdicts: dict[str, bool] = {}
        for point in points:
            verdict = rule.passes(point.parsed, point.number) if rule is not None else None
            entry: dict[str, Any] = {
                "name": name, "event_name": group["event_name"],
                "event_type": group["event_type"],
                "value": _output_value(point.parsed, point.number), "passed": verdict,
            }
            if not isinstance(point.parsed, (bool, int, float)) and point.number is None:
                entry["text"] = (point.parsed if isinstance(point.parsed, str)
                                 else orjson.dumps(point.parsed).decode())
            per_session.setdefault(point.session_id, []).append(entry)
            if verdict is not None:
                key = datapoint_of.get(point.session_id) or point.session_id
                verdicts[key] = verdicts.get(key, True) and verdict
                if not verdict:
                    failed_sessions.add(point.session_id)
        for key, ok in verdicts.items():
            (passed_ids if ok else failed_ids).append(key)
        detail: dict[str, Any] = {
            "metric_name": name,
            "metric_type": "boolean" if booleans else "numeric" if numeric else "string",
            "event_name": group["event_name"], "event_type": group["event_type"],
            "aggregate": _finite(group["aggregate"]) if group["numeric_count"] else None,
            "values": [p.number for p in points if p.number is not None],
        }
        if rule is not None:
            detail["passing_range"] = rule.passing_range()
            detail["datapoints"] = {"passed": passed_ids, "failed": failed_ids}
        details.append(detail)
    datapoints = []
    passed: list[str] = []
    failed: list[str] = []
    for session_id in sorted(per_session, key=lambda s: order.get(s, len(order))):
        ok = session_id not in failed_sessions
        key = datapoint_of.get(session_id) or session_id
        datapoints.append({"session_id": session_id, "datapoint_id": datapoint_of.get(session_id),
                           "passed": ok, "metrics": per_session[session_id]})
        target = passed if ok else failed
        if key not in target:
            target.append(key)
    passed = [k for k in passed if k not in failed]
    return {
        "status": run.get("status") or "pending",
        "success": True,
        "passed": passed,
        "failed": failed,
        "metrics": {"aggregation_function": aggregate, "details": details},
        "datapoints": datapoints,
        "event_details": [{"event_name": d["event_name"], "event_type": d["event_type"]}
                          for d in rows["event_details"]],
        "run_object": dict(run),
    }


# --- comparison ---------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _per_datapoint(result: Mapping[str, Any]) -> dict[tuple[str, str, str], dict[str, float]]:
    """``{(metric, event name, event type): {datapoint id: mean numeric value}}``."""
    gathered: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for datapoint in result["datapoints"]:
        key_id = datapoint["datapoint_id"] or datapoint["session_id"]
        for metric in datapoint["metrics"]:
            value = metric["value"]
            if value is None:
                continue
            key = (metric["name"], metric["event_name"], metric["event_type"])
            gathered.setdefault(key, {}).setdefault(key_id, []).append(float(value))
    return {key: {dp: v for dp, values in by_dp.items() if (v := _mean(values)) is not None}
            for key, by_dp in gathered.items()}


def _datapoint_ids(result: Mapping[str, Any]) -> list[str]:
    return list(dict.fromkeys(d["datapoint_id"] or d["session_id"]
                              for d in result["datapoints"]))


def build_comparison(new: Mapping[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    """``GET /v1/runs/{new}/compare-with/{old}``: aggregate and per-datapoint deltas of
    every metric of either run (``difference`` = new - old; ``improved`` means higher)."""
    old_ids, new_ids = _datapoint_ids(old), _datapoint_ids(new)
    common = [d for d in new_ids if d in set(old_ids)]
    old_details = {(d["metric_name"], d["event_name"], d["event_type"]): d
                   for d in old["metrics"]["details"]}
    new_details = {(d["metric_name"], d["event_name"], d["event_type"]): d
                   for d in new["metrics"]["details"]}
    old_values, new_values = _per_datapoint(old), _per_datapoint(new)
    metrics = []
    for key in sorted(set(old_details) | set(new_details)):
        old_detail, new_detail = old_details.get(key), new_details.get(key)
        old_aggregate = old_detail["aggregate"] if old_detail else None
        new_aggregate = new_detail["aggregate"] if new_detail else None
        difference = (new_aggregate - old_aggregate
                      if old_aggregate is not None and new_aggregate is not None else None)
        improved: list[str] = []
        degraded: list[str] = []
        same: list[str] = []
        pairs: list[dict[str, Any]] = []
        for datapoint_id in common:
            before = old_values.get(key, {}).get(datapoint_id)
            after = new_values.get(key, {}).get(datapoint_id)
            if before is None or after is None:
                continue
            pairs.append({"datapoint_id": datapoint_id, "old_value": before,
                          "new_value": after, "delta": after - before})
            (improved if after > before else degraded if after < before else same).append(
                datapoint_id)
        metrics.append({
            "metric_name": key[0], "event_name": key[1], "event_type": key[2],
            "metric_type": (new_detail or old_detail or {}).get("metric_type"),
            "old_aggregate": old_aggregate, "new_aggregate": new_aggregate,
            "difference": difference,
            "percentage_change": (difference / abs(old_aggregate) * 100.0
                                  if difference is not None and old_aggregate else None),
            "found_count": len(pairs), "improved_count": len(improved),
            "degraded_count": len(degraded), "same_count": len(same),
            "improved": improved, "degraded": degraded, "same": same,
            "old_values": [p["old_value"] for p in pairs],
            "new_values": [p["new_value"] for p in pairs],
            "datapoints": pairs,
        })
    old_events = {(e["event_name"], e["event_type"]) for e in old["event_details"]}
    new_events = {(e["event_name"], e["event_type"]) for e in new["event_details"]}
    event_details = [
        {"event_name": name, "event_type": kind,
         "presence": "both" if (name, kind) in old_events and (name, kind) in new_events
         else "new" if (name, kind) in new_events else "old"}
        for name, kind in sorted(old_events | new_events, key=lambda e: (e[1], e[0]))
    ]
    return {"metrics": metrics, "commonDatapoints": common, "event_details": event_details,
            "old_run": old["run_object"], "new_run": new["run_object"]}


def pair_events(first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]],
                *, limit: int, page: int) -> dict[str, Any]:
    """``GET /v1/runs/compare/events``: for each datapoint both runs have, the first
    matching event of each run (``event_1`` from the first run), one page of them."""
    def first_by_datapoint(events: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
        found: dict[str, Mapping[str, Any]] = {}
        for event in events:
            metadata = event.get("metadata") or {}
            datapoint = metadata.get("datapoint_id") if isinstance(metadata, dict) else None
            if isinstance(datapoint, str) and datapoint and datapoint not in found:
                found[datapoint] = event
        return found
    ones, twos = first_by_datapoint(first), first_by_datapoint(second)
    pairs = [{"datapoint_id": dp, "event_1": dict(ones[dp]), "event_2": dict(twos[dp])}
             for dp in ones if dp in twos]
    start = (page - 1) * limit
    return {"events": pairs[start:start + limit], "totalEvents": len(pairs)}
