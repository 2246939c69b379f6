"""The crash-loop bookkeeping (apiary/dataplane/writer/_suspects.py) on a real nats-server:
a redelivery the writer asked for (a hand-back) is no suspect; one it did not ask for is, and
the attempts recorded before each quarantine flush survive a new writer (a new client)."""

from __future__ import annotations

import contextlib

from nats.aio.client import Client
from nats.js.errors import NotFoundError

from apiary.dataplane.writer._suspects import SUSPECTS_BUCKET, Suspects, Suspicion
from apiary.queue import NatsServer, connect


async def test_hand_backs_are_not_suspects_and_attempts_are_durable(
    nc: Client, nats_server: NatsServer
) -> None:
    js = nc.jetstream()
    with contextlib.suppress(NotFoundError):
        await js.delete_key_value(SUSPECTS_BUCKET)
    suspects = Suspects(js)
    # Delivered a second time, nothing recorded: its first delivery ended without an
    # outcome (the writer died).
    assert await suspects.check(41, 2) == Suspicion(True, 0)
    # Handed back on its 2nd delivery: the 3rd is the redelivery the writer asked for ...
    await suspects.handed_back(41, 2)
    assert await suspects.check(41, 3) == Suspicion(False, 0)
    # ... but a 4th one is not (the 3rd ended without an outcome).
    assert (await suspects.check(41, 4)).suspect

    await suspects.attempting(42, 1, "m-42")
    await suspects.attempting(42, 2, "m-42")
    other = await connect(nats_server.url, name="another-writer")
    try:  # another writer process sees the count
        assert await Suspects(other.jetstream()).check(42, 4, "m-42") == Suspicion(True, 2)
    finally:
        await other.close()
    # Another message under the same sequence (the stream created again) starts afresh.
    assert await suspects.check(42, 4, "other") == Suspicion(True, 0)
    await suspects.settled(42)
    assert await suspects.check(42, 5, "m-42") == Suspicion(True, 0)  # forgotten
