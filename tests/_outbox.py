"""The control plane's mail outbox for tests whose control plane runs in-process (no
controller actor): :func:`running_outbox` sends queued mail from a thread, as the
controller's loop does, until the block ends."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from apiary.control import ControlPlane
from apiary.control.outbox import MailOutbox


@contextlib.contextmanager
def running_outbox(cp: ControlPlane, *, interval_s: float = 0.02) -> Iterator[MailOutbox]:
    """A :class:`MailOutbox` on ``cp``'s cpdb, envelope and clock, passing every
    ``interval_s`` in a daemon thread."""
    outbox = MailOutbox(cp.settings, cp.database, cp.envelope, clock=lambda: cp.clock())
    stop = threading.Event()
    failures: list[BaseException] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                outbox.send_due()
            except Exception as exc:  # reported when the block ends
                failures.append(exc)
                return
            stop.wait(interval_s)

    thread = threading.Thread(target=loop, name="test-mail-outbox", daemon=True)
    thread.start()
    try:
        yield outbox
    finally:
        stop.set()
        thread.join(30)
    assert not failures, failures
