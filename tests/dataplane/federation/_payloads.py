"""Config-push payloads as the control plane sends them (the contract's shapes)."""

from __future__ import annotations

from typing import Any


def evaluator(metric_id: str, project_id: str, *, version: int = 1, kind: str = "python",
              enabled: bool = True, deployed: bool = True, name: str | None = None,
              sampling_pct: float = 100.0) -> dict[str, Any]:
    """The control plane's evaluator read model (EvaluatorOut as JSON), one version deployed."""
    versions = [{
        "version": n, "criteria": "Is it {{outputs}} polite?" if kind == "llm" else None,
        "code": None if kind == "llm" else f"def score(event):\n    return {n}\n",
        "return_type": "float", "pass_min": None, "pass_max": None,
        "sampling_pct": sampling_pct, "filters": {"filterArray": []},
        "model_params": {"model_name": "gpt-4o-mini"} if kind == "llm" else {},
        "message": None, "created_by": "user:alice", "created_at": "2026-12-06T00:00:00Z",
    } for n in range(1, version + 1)]
    return {"id": metric_id, "project_id": project_id, "name": name or metric_id, "type": kind,
            "description": "", "enabled": enabled,
            "deployed_version": version if deployed else None, "versions": versions}
