"""Accounts for tests that run a control plane as a server: sign-up leaves the address
unverified (the account owns nothing), so helpers verify it the way a user of an
installation without SMTP does -- the operator prints the link (``apiary users verify-link``,
here :func:`apiary.control.admin.users_verify_link` on the same cpdb) and the user opens it."""

from __future__ import annotations

import httpx

from apiary.control import admin
from apiary.settings import ApiarySettings


def verify_email(settings: ApiarySettings, cp_url: str, email: str) -> None:
    """Verify ``email``'s account on the control plane at ``cp_url`` (cpdb of ``settings``)."""
    token = admin.users_verify_link(settings, email=email)["token"]
    response = httpx.post(f"{cp_url.rstrip('/')}/v1/auth/email/verify", json={"token": token},
                          timeout=30)
    assert response.status_code == 200, response.text
