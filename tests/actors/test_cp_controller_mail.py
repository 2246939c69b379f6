"""The control-plane controller actor runs the mail outbox: mail queued in cpdb goes out to
a real SMTP server (aiosmtpd); mail queued while Ray restarts the killed actor
(``ray.kill``) goes out once the restarted one runs, and nothing is sent twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _cp_controller import controller_settings, local_ray, wait_restarted
from _notification_receivers import Mailbox, smtp_server
from sqlalchemy import select

# Ray as `apiary up` runs it (RAY_AUTH_MODE chosen before Ray is imported).
import apiary.cli  # noqa: F401
from apiary.control import ControlPlane
from apiary.control.db import OutgoingMail
from apiary.control.identity import accounts, verification
from apiary.startup.federation import (
    start_control_plane_controller,
    stop_control_plane_controller,
)

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    with local_ray("apiary-cp-mail-test"):
        yield


def _queue_verification(cp: ControlPlane, email: str) -> str:
    with cp.transaction() as db:
        user = accounts.create_user(cp, db, email=email, password="a long passphrase 123",
                                    display_name=None)
        issued = verification.issue(cp, db, user, email=email, purpose="signup")
        verification.queue_mail(cp, db, issued)
    return issued.token


async def _until(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def _to(mailbox: Mailbox, address: str) -> list[str]:
    return [str(m["Message-ID"]) for to, m in mailbox.received() if to == [address]]


def _sent(cp: ControlPlane, address: str) -> bool:
    with cp.transaction() as db:
        row = db.execute(select(OutgoingMail).where(OutgoingMail.to_address == address)
                         ).scalar_one()
        return row.sent_at is not None


async def test_the_controller_sends_queued_mail_and_resumes_after_a_kill(
        ray_cluster: None, tmp_path: Path) -> None:
    import ray

    with smtp_server() as (url, mailbox):
        settings = controller_settings(tmp_path, "http://cp.test/cp", smtp_url=url,
                                       smtp_from="Apiary <noreply@apiary.test>")
        cp = ControlPlane.open(settings)
        handle = start_control_plane_controller(settings)
        try:
            first = _queue_verification(cp, "first@corp.example")
            await _until("the first mail", lambda: _sent(cp, "first@corp.example"))
            [mail_id] = _to(mailbox, "first@corp.example")
            assert mail_id.endswith("@apiary.control>")
            [(_, mail)] = [(to, m) for to, m in mailbox.received()
                           if to == ["first@corp.example"]]
            assert first in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            before = ray.get(handle.status.remote(), timeout=30)
            ray.kill(handle, no_restart=False)
            # Queued while the actor is down: it waits in cpdb.
            _queue_verification(cp, "second@corp.example")
            await wait_restarted(handle, before)
            await _until("the second mail", lambda: _sent(cp, "second@corp.example"))
            assert len(_to(mailbox, "first@corp.example")) == 1
            assert len(_to(mailbox, "second@corp.example")) == 1
        finally:
            stop_control_plane_controller(handle)
            cp.close()
