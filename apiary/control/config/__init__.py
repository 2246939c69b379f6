"""Configuration the control plane holds for projects: prompt templates
(:mod:`.prompts`), evaluator configurations (:mod:`.evaluators`), alert definitions
(:mod:`.alerts`). Each function takes an already-authorized project."""

from apiary.control.config import alerts, evaluators, prompts

__all__ = ["alerts", "evaluators", "prompts"]
