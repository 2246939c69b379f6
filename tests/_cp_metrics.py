"""A Python metric created and deployed at a real control plane (its own code, no HTTP):
what the federation suites push to a data plane."""

from __future__ import annotations

from apiary.control.config import evaluators
from apiary.control.db import Project
from apiary.control.service import ControlPlane


def deploy_python_metric(cp: ControlPlane, project_id: str, name: str) -> str:
    """Create ``name`` (scores every event 1.0, sampled 100 %) in ``project_id``, deploy its
    version 1 in the same transaction, and return its id."""
    with cp.transaction() as db:
        project = db.get(Project, project_id)
        assert project is not None
        created = evaluators.create_evaluator(
            cp, db, project, name=name, kind="python", description="",
            spec=evaluators.VersionSpec(
                criteria=None, code="def score(event):\n    return 1.0\n", return_type="float",
                pass_min=None, pass_max=None, sampling_pct=100.0,
                filters={"filterArray": []}, model_params={}),
            author="user:test")
        evaluators.deploy(cp, db, created.evaluator, 1)
        return str(created.evaluator.id)
