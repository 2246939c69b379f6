"""Without a mail transport (no APIARY_SMTP_URL, no APIARY_CP_SES_REGION), mail is queued
and stays pending, unattempted: nothing crashes, the API says the mail is not on its way,
and the operator's verification link still works."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi.testclient import TestClient
from sqlalchemy import select

from apiary.control import ControlPlane
from apiary.control.db import OutgoingMail
from apiary.control.outbox import MailOutbox

from ._tenants import PASSWORD, auth, make_tenant, ok, verification_token


async def test_mail_stays_queued_and_the_operator_link_still_works(
        client: TestClient, cp: ControlPlane) -> None:
    assert cp.settings.smtp_url is None
    assert cp.settings.cp_ses_region is None
    tenant = make_tenant(client, "Quiet")
    ok(client.post(f"/v1/orgs/{tenant.org_id}/invitations",
                   json={"email": "bob@quiet.example", "role": "member"},
                   headers=auth(tenant.owner)), 201)
    session = ok(client.post("/v1/auth/signup", json={"email": "ada@quiet.example",
                                                       "password": PASSWORD}), 201)
    client.cookies.clear()
    pending = ok(client.post("/v1/me/email/verification",
                             headers=auth(session["session_token"])), 202)
    assert pending["mailed"] is False  # queued, but no transport will send it
    outbox = MailOutbox(cp.settings, cp.database, cp.envelope, clock=lambda: cp.clock())
    assert not outbox.configured
    assert outbox.send_due() == 0
    # The loop runs without a transport and touches nothing.
    task = asyncio.get_running_loop().create_task(outbox.run(interval_s=0.01))
    await asyncio.sleep(0.1)
    assert not task.done()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    with cp.transaction() as db:
        queued = list(db.execute(select(OutgoingMail)).scalars())
    kinds = sorted(row.kind for row in queued)
    # The owner's and ada's sign-ups, ada's new link, the invitation.
    assert kinds == ["invitation", "verification", "verification", "verification"]
    for row in queued:
        assert row.attempts == 0
        assert row.sent_at is None
        assert row.failed_at is None
        assert row.last_error is None
    ok(client.post("/v1/auth/email/verify",
                   json={"token": verification_token(client, "ada@quiet.example")}))
    me = ok(client.get("/v1/me", headers=auth(session["session_token"])))
    assert me["user"]["email_verified"] is True
