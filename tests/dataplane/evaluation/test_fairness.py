"""Fair turns: metrics take turns; a backlog of one never holds every slot."""

from __future__ import annotations

import asyncio

import pytest

from apiary.dataplane.evaluation.fairness import FairTurns, TurnsClosed


async def test_a_backlog_of_one_key_does_not_delay_another_key_behind_it() -> None:
    turns = FairTurns(total=2, per_key=1)
    order: list[str] = []
    gates = {name: asyncio.Event() for name in ("busy-0", "busy-1", "busy-2", "normal")}

    async def job(key: str, name: str) -> None:
        async with turns.turn(key):
            order.append(name)
            await gates[name].wait()

    busy = [asyncio.create_task(job("busy", f"busy-{i}")) for i in range(3)]
    await asyncio.sleep(0)
    normal = asyncio.create_task(job("normal", "normal"))
    await asyncio.sleep(0)
    # One busy task runs (its per-key cap); the normal one takes the other slot at once.
    assert order == ["busy-0", "normal"]
    assert (turns.running, turns.waiting) == (2, 2)
    gates["normal"].set()
    await normal
    gates["busy-0"].set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert order == ["busy-0", "normal", "busy-1"]
    gates["busy-1"].set()
    gates["busy-2"].set()
    await asyncio.gather(*busy)
    assert (turns.running, turns.waiting) == (0, 0)


async def test_waiting_keys_are_served_round_robin() -> None:
    turns = FairTurns(total=1, per_key=1)
    order: list[str] = []
    release = asyncio.Event()

    async def job(key: str, name: str) -> None:
        async with turns.turn(key):
            order.append(name)
            await release.wait()

    first = asyncio.create_task(job("a", "a0"))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(job(k, f"{k}{i}")) for i in (1, 2) for k in ("a", "b")]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *rest)
    assert order == ["a0", "a1", "b1", "a2", "b2"]


async def test_close_sends_waiters_back_and_lets_running_ones_finish() -> None:
    turns = FairTurns(total=1, per_key=1)
    release = asyncio.Event()

    async def job() -> str:
        async with turns.turn("k"):
            await release.wait()
        return "done"

    running = asyncio.create_task(job())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(job())
    await asyncio.sleep(0)
    turns.close()
    with pytest.raises(TurnsClosed):
        await waiting
    release.set()
    assert await running == "done"
    with pytest.raises(TurnsClosed):
        async with turns.turn("k"):
            pass
    assert turns.running == 0


async def test_a_cancelled_waiter_gives_no_slot_away() -> None:
    turns = FairTurns(total=1, per_key=1)
    release = asyncio.Event()

    async def job(key: str) -> None:
        async with turns.turn(key):
            await release.wait()

    running = asyncio.create_task(job("a"))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(job("b"))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert (turns.running, turns.waiting) == (1, 0)
    release.set()
    await running
    assert turns.running == 0


async def test_a_key_may_have_a_cap_of_its_own() -> None:
    turns = FairTurns(total=4, per_key=1)
    release = asyncio.Event()

    async def job(key: str, limit: int | None) -> None:
        async with turns.turn(key, limit):
            await release.wait()

    jobs = [asyncio.create_task(job("judge", 3)) for _ in range(4)]
    await asyncio.sleep(0)
    assert (turns.running, turns.waiting) == (3, 1)
    release.set()
    await asyncio.gather(*jobs)
    assert turns.running == 0
