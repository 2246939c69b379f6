"""The evaluator service's supervision (apiary/dataplane/evaluation/service.py) on a real
nats-server: a loop that raises is started again with back-off and counted, and
``ensure_running`` starts a loop whose task ended. No evaluator dies silently."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from _fresh_topology import fresh_topology, until
from _openai_server import FakeOpenAI
from nats.aio.client import Client

from apiary.dataplane.evaluation.loop import EvaluatorLoop
from apiary.dataplane.evaluation.service import EvaluatorService
from apiary.queue import NatsServer
from apiary.settings import ApiarySettings


@pytest.fixture
async def service(nats_server: NatsServer, nc: Client, judge: FakeOpenAI,
                  tmp_path: Path) -> EvaluatorService:
    settings = ApiarySettings(data_dir=tmp_path, writer_ack_wait_s=2.0,
                              evaluator_judge_url=judge.url)
    await fresh_topology(nc, settings)
    return EvaluatorService(settings, nats_server.url, f"ev-{uuid.uuid4().hex[:6]}")


async def test_evaluator_loop_that_raises_is_restarted_with_back_off_and_counted(
        service: EvaluatorService, monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = EvaluatorLoop.run
    runs: list[int] = []

    async def run_that_fails_twice(loop: EvaluatorLoop) -> None:
        runs.append(1)
        if len(runs) <= 2:
            raise RuntimeError("injected bug in the evaluator loop")
        await real_run(loop)

    monkeypatch.setattr(EvaluatorLoop, "run", run_that_fails_twice)
    await service.start()
    try:
        async def restarted() -> bool:
            stats = await service.stats()
            return bool(stats["loop_restarts"] == 2 and stats["running"] and len(runs) == 3)

        await until(restarted, 20.0, "the loop restarted twice")
        assert "injected bug" in (await service.stats())["last_error"]
    finally:
        final = await service.stop()
    assert final["running"] is False


async def test_ensure_running_starts_an_evaluator_whose_task_ended(
        service: EvaluatorService) -> None:
    await service.start()
    try:
        task: Any = service._task  # the fault under test: the supervisor's task ended
        task.cancel()
        await until(lambda: _done(task), 10.0, "the task cancelled")
        ended = await service.stats()
        assert ended["running"] is False
        assert "supervisor ended" in ended["last_error"]
        await service.ensure_running()
        again = await service.stats()
        assert again["running"] is True
        assert again["loop_restarts"] == 1
    finally:
        await service.stop()
    await service.ensure_running()  # a stopped evaluator stays stopped
    assert (await service.stats())["running"] is False


async def _done(task: Any) -> bool:
    return bool(task.done())
