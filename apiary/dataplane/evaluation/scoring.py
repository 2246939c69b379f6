"""Scoring one event with one metric version: Python in the sandbox, LLM judges over HTTP.

:class:`Scorer` holds what scoring needs in one evaluator: a :class:`SandboxPool` (started
on the first Python metric, so an evaluator that only runs judges never pays for it) and a
:class:`~apiary.dataplane.evaluation.judge.JudgeClient`. Python metrics of different projects never
share a sandbox worker (the project id is the pool's isolation key).

Outcomes: a :class:`MetricResult`; or an exception whose ``retryable`` says whether to try
the task again later (sandbox or judge unavailable) or to record the metric as failed on
this event (the code raised, timed out, the judge's answer held no verdict, ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from apiary.dataplane.evaluation.judge import JudgeClient, OpenAIJudgeClient, judge
from apiary.dataplane.evaluation.metrics import MetricSpec
from apiary.dataplane.evaluation.sandbox import MetricResult, SandboxLimits, SandboxPool
from apiary.errors import InvalidRequest
from apiary.event import Tenant
from apiary.settings import ApiarySettings


class Scorer:
    def __init__(self, *, sandbox_size: int, limits: SandboxLimits, judge_client: JudgeClient,
                 default_model: str, sandbox_max_size: int | None = None) -> None:
        self._sandbox_size = sandbox_size
        self._sandbox_max_size = sandbox_max_size
        self._limits = limits
        self._sandbox: SandboxPool | None = None
        self._sandbox_lock = asyncio.Lock()
        self.judge_client = judge_client
        self._default_model = default_model

    @classmethod
    def from_settings(cls, settings: ApiarySettings,
                      judge_client: JudgeClient | None = None) -> Scorer:
        if judge_client is None:
            key = settings.evaluator_judge_api_key
            judge_client = OpenAIJudgeClient(
                settings.judge_url, api_key=key.get_secret_value() if key else None,
                timeout_s=settings.evaluator_judge_timeout_s)
        return cls(sandbox_size=settings.sandbox_pool_size,
                   sandbox_max_size=settings.sandbox_pool_max_size,
                   limits=SandboxLimits.from_settings(settings), judge_client=judge_client,
                   default_model=settings.evaluator_judge_model)

    @property
    def sandbox(self) -> SandboxPool | None:
        return self._sandbox

    async def _pool(self) -> SandboxPool:
        async with self._sandbox_lock:
            if self._sandbox is None:
                pool = SandboxPool(self._sandbox_size, self._limits,
                                   max_size=self._sandbox_max_size)
                await pool.start()
                self._sandbox = pool
            return self._sandbox

    async def score(self, metric: MetricSpec, event: Mapping[str, Any],
                    tenant: Tenant) -> MetricResult:
        if metric["kind"] == "python":
            pool = await self._pool()
            return await pool.run(metric["code"] or "", dict(event),
                                  isolation_key=tenant["project_id"])
        if metric["kind"] == "llm":
            return await judge(self.judge_client, metric, event, tenant,
                               default_model=self._default_model)
        raise InvalidRequest(f"{metric['kind']} metrics are not scored automatically",
                             field="type")

    async def close(self) -> None:
        if self._sandbox is not None:
            await self._sandbox.close()
            self._sandbox = None
        closer = getattr(self.judge_client, "aclose", None)
        if closer is not None:
            await closer()


__all__ = ["Scorer"]
