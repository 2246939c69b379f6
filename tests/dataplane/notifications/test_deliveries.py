"""The delivery records: one claim at a time per delivery (a compare-and-set in a real
JetStream key-value bucket), a dead holder's claim taken over once it expires, finished
deliveries never claimed again (a dead-lettered one only by a replay)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from _notify import fresh
from nats.aio.client import Client

from apiary.dataplane.notifications.deliveries import DeliveryLedger
from apiary.settings import ApiarySettings


async def test_one_claim_at_a_time_and_a_dead_holders_claim_expires(
        nc: Client, tmp_path: Path) -> None:
    settings = ApiarySettings(data_dir=tmp_path)
    await fresh(nc, settings)
    ledger = await DeliveryLedger.open(nc.jetstream(), settings)
    claims = await asyncio.gather(*(ledger.claim("d1", owner=f"o{i}", hold_s=0.5)
                                    for i in range(5)))
    assert sum(c.mine for c in claims) == 1
    assert all(c.state == "claimed" for c in claims if not c.mine)
    [held] = [c for c in claims if c.mine]
    assert held.revision is not None
    # The holder dies; once its claim expires another takes it over...
    await asyncio.sleep(0.6)
    later = await ledger.claim("d1", owner="o9", hold_s=30)
    assert later.mine
    # ... and the dead holder can no longer extend it.
    assert await ledger.extend("d1", owner="o0", revision=held.revision, hold_s=30) is None
    assert later.revision is not None
    assert await ledger.extend("d1", owner="o9", revision=later.revision, hold_s=30)


async def test_finished_deliveries_are_not_claimed_again_but_a_replay_retries_a_dead_one(
        nc: Client, tmp_path: Path) -> None:
    settings = ApiarySettings(data_dir=tmp_path)
    await fresh(nc, settings)
    ledger = await DeliveryLedger.open(nc.jetstream(), settings)
    await ledger.record("done", "delivered", channel_id="c1", msg_id="m")
    await ledger.record("dead", "dead_lettered", channel_id="c2", msg_id="m")
    assert (await ledger.claim("done", owner="o", hold_s=5, again=True)).state == "delivered"
    assert (await ledger.claim("dead", owner="o", hold_s=5)).state == "dead_lettered"
    assert (await ledger.claim("dead", owner="o", hold_s=5, again=True)).mine
    assert await ledger.outcome("done") == "delivered"
    assert await ledger.outcome("dead") is None  # claimed again by the replay
    assert await ledger.outcome("never") is None


async def test_a_released_claim_is_taken_at_once(nc: Client, tmp_path: Path) -> None:
    settings = ApiarySettings(data_dir=tmp_path)
    await fresh(nc, settings)
    ledger = await DeliveryLedger.open(nc.jetstream(), settings)
    held = await ledger.claim("d2", owner="stopping", hold_s=3600)
    assert held.revision is not None
    assert not (await ledger.claim("d2", owner="next", hold_s=30)).mine
    await ledger.release("d2", owner="stopping", revision=held.revision)
    assert (await ledger.claim("d2", owner="next", hold_s=30)).mine
