"""Email verification endpoints: the mailed link, a new link, and changing the address.

The mailed link (``GET /v1/auth/email/verify?token=...``) only shows a page with a button:
a GET never uses the link, so mail scanners that prefetch links cannot spend it. The button
(or any client) ``POST``\\ s the token, which verifies the address once.
"""

from __future__ import annotations

import html
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse

from apiary.control.api._guards import PUBLIC, USER, Caller
from apiary.control.api.schemas_identity import (
    EmailChangeRequest,
    VerificationPendingOut,
    VerifiedEmailOut,
    VerifyEmailRequest,
)
from apiary.control.db import User
from apiary.control.identity import verification
from apiary.control.identity.accounts import find_user_by_email, validate_email
from apiary.control.passwords import verify_password
from apiary.control.service import ControlPlane
from apiary.errors import AuthenticationFailed, Conflict, InvalidRequest, MalformedPayload

router = APIRouter(tags=["identity"])

Public = Annotated[ControlPlane, Depends(PUBLIC)]
UserCaller = Annotated[Caller, Depends(USER)]

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Confirm your email address</title></head>
<body><form method="post" action="verify">
<input type="hidden" name="token" value="{token}">
<p>Confirm this email address for your Apiary account.</p>
<button type="submit">Confirm</button></form></body></html>
"""


@router.get(verification.VERIFY_PATH, response_class=HTMLResponse,
            summary="The mailed link: a page whose button confirms the address (a GET "
            "never uses the link)")
def verify_page(cp: Public, token: str = Query(max_length=200)) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(token=html.escape(token, quote=True)),
                        headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


_TOKEN_SCHEMA = VerifyEmailRequest.model_json_schema()


@router.post(verification.VERIFY_PATH, response_model=VerifiedEmailOut,
             summary="Use a verification link (JSON {token}, or the page's form): once, "
             "before it expires",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": _TOKEN_SCHEMA},
                 "application/x-www-form-urlencoded": {"schema": _TOKEN_SCHEMA},
             }}})
async def verify(request: Request, cp: Public) -> VerifiedEmailOut:
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        values = parse_qs(raw.decode("utf-8", "replace")).get("token", [])
        token = values[0] if values else ""
    else:
        try:
            token = VerifyEmailRequest.model_validate_json(raw).token
        except ValueError:
            raise MalformedPayload("send JSON {\"token\": \"apev_...\"}") from None
    return await run_in_threadpool(_confirm, cp, token)  # database work off the event loop


def _confirm(cp: ControlPlane, token: str) -> VerifiedEmailOut:
    with cp.transaction() as db:
        user = verification.confirm(cp, db, token)
        return VerifiedEmailOut(user_id=user.id, email=user.email, email_verified=True)


@router.post("/v1/me/email/verification", response_model=VerificationPendingOut,
             status_code=202, summary="Mail a new verification link for the account's "
             "address (older links stop working)")
def resend(caller: UserCaller) -> VerificationPendingOut:
    cp = caller.cp
    with cp.transaction() as db:
        user = db.get(User, caller.user.user_id)
        assert user is not None
        if verification.is_verified(user):
            raise Conflict("this account's email address is already verified")
        issued = verification.issue(cp, db, user, email=user.email, purpose="signup")
        mailed = verification.queue_mail(cp, db, issued)
    return VerificationPendingOut(email=issued.email, expires_at=issued.expires_at,
                                  mailed=mailed)


@router.post("/v1/me/email", response_model=VerificationPendingOut, status_code=202,
             summary="Change the account's address: a link is mailed to the new one, which "
             "replaces the old one only when the link is used")
def change_email(body: EmailChangeRequest, caller: UserCaller) -> VerificationPendingOut:
    cp = caller.cp
    email = validate_email(body.email)
    verification.require_recent_login(cp, caller.user.authenticated_at,
                                      "change the email address")
    with cp.transaction() as db:
        user = db.get(User, caller.user.user_id)
        assert user is not None
        stored = user.password_hash
    # A stolen session alone must not be able to move the account to another mailbox.
    if stored is not None:
        if body.current_password is None:
            raise InvalidRequest("send current_password to change the email address",
                                 field="current_password")
        if not verify_password(cp.password_hasher, stored, body.current_password):
            raise AuthenticationFailed("the current password is not right",
                                       field="current_password")
    with cp.transaction() as db:
        user = db.get(User, caller.user.user_id)
        assert user is not None
        holder = find_user_by_email(db, email)
        if holder is not None and holder.id != user.id and verification.is_verified(holder):
            raise Conflict("an account with this email already exists", field="email")
        if holder is not None and holder.id == user.id and verification.is_verified(user):
            raise Conflict("this is already the account's verified address", field="email")
        issued = verification.issue(cp, db, user, email=email, purpose="change")
        mailed = verification.queue_mail(cp, db, issued)
    return VerificationPendingOut(email=issued.email, expires_at=issued.expires_at,
                                  mailed=mailed)
