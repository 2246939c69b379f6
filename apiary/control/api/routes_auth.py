"""Identity endpoints: sign-up, login, logout, the caller's account and MFA, the token
exchange, and the JWKS (data planes: :mod:`.routes_federation`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request

from apiary.control.api._guards import (
    CSRF_COOKIE,
    PUBLIC,
    SESSION_COOKIE,
    USER,
    Caller,
    credential_of,
    csrf_token_for,
    refuse_cross_site_login,
)
from apiary.control.api.schemas import (
    LoginRequest,
    MembershipOut,
    MeOut,
    PasswordChangeOut,
    PasswordChangeRequest,
    ReauthenticateRequest,
    RecoveryCodesOut,
    SessionOut,
    SignupRequest,
    TokenOut,
    TokenRequest,
    TotpCodeRequest,
    TotpEnrolmentOut,
    UserOut,
)
from apiary.control.db import Membership, Organization, Project, Role, User, Workspace
from apiary.control.federation import verify_identity
from apiary.control.identity import accounts, totp, verification
from apiary.control.identity.sessions import (
    SESSION_PREFIX,
    IssuedSession,
    create_session,
    resolve_session,
    revoke_session,
)
from apiary.control.roles import load_principal
from apiary.control.service import ControlPlane
from apiary.control.throttle import (
    DEVICE_COOKIE,
    KNOWN_CLIENT_TTL_S,
    account_key,
    client_address,
)
from apiary.control.tokens import exchange_api_key, exchange_session
from apiary.credentials import looks_like_jwt
from apiary.errors import AuthenticationFailed, InvalidRequest, PermissionDenied

router = APIRouter(tags=["identity"])

#: The header a federated data plane proves itself with when it exchanges a key.
DATA_PLANE_IDENTITY_HEADER = "Apiary-Data-Plane"

Public = Annotated[ControlPlane, Depends(PUBLIC)]
UserCaller = Annotated[Caller, Depends(USER)]


def user_out(db_user: User, mfa_enabled: bool) -> UserOut:
    out = UserOut.model_validate(db_user)
    out.mfa_enabled = mfa_enabled
    out.email_verified = db_user.email_verified_at is not None
    out.has_password = db_user.password_hash is not None
    return out


def _client(cp: ControlPlane, request: Request) -> str:
    """The caller's address for throttling (``cp_trusted_proxies`` decide whether
    ``X-Forwarded-For`` is believed)."""
    return client_address(request, cp.settings.cp_trusted_proxies)


def set_session_cookie(cp: ControlPlane, response: Response, issued: IssuedSession) -> None:
    """The session cookie (HttpOnly, SameSite=Lax, Secure when the issuer is https) and its
    CSRF token's cookie (readable by the UI's script, which sends it as ``X-CSRF-Token``)."""
    secure = cp.issuer.startswith("https://")
    response.set_cookie(
        SESSION_COOKIE, issued.token, max_age=cp.settings.cp_session_ttl_s, httponly=True,
        samesite="lax", secure=secure, path="/",
    )
    response.set_cookie(
        CSRF_COOKIE, csrf_token_for(issued.token), max_age=cp.settings.cp_session_ttl_s,
        httponly=False, samesite="strict", secure=secure, path="/",
    )


def session_out(issued: IssuedSession, mfa_enabled: bool) -> SessionOut:
    return SessionOut(session_token=issued.token, expires_at=issued.session.expires_at,
                      auth_method=issued.session.auth_method,
                      user=user_out(issued.user, mfa_enabled))


@router.post("/v1/auth/signup", status_code=201, response_model=SessionOut,
             dependencies=[Depends(refuse_cross_site_login)],
             summary="Create an account with email and password, and log in; a link to "
             "verify the address is mailed (until it is used the account owns nothing)")
def signup(body: SignupRequest, request: Request, response: Response, cp: Public) -> SessionOut:
    if not cp.settings.cp_signup_enabled:
        raise PermissionDenied("sign-up is disabled on this installation; ask for an invitation")
    cp.throttle.admit_attempt(_client(cp, request))  # each sign-up costs a password hash
    with cp.transaction() as db:
        # An unverified account reserves nothing: a pre-hijacker's pending sign-up gives
        # the address up (a verified one keeps it: 409).
        verification.release_address(cp, db, body.email)
        user = accounts.create_user(cp, db, email=body.email, password=body.password,
                                    display_name=body.display_name)
        link = verification.issue(cp, db, user, email=user.email, purpose="signup")
        verification.queue_mail(cp, db, link)  # sent by the outbox once this commits
        issued = create_session(cp, db, user, "password")
    # The session works, but the account owns nothing until the mailed link is used.
    set_session_cookie(cp, response, issued)
    return session_out(issued, False)


@router.post("/v1/auth/login", response_model=SessionOut,
             dependencies=[Depends(refuse_cross_site_login)],
             summary="Log in with email, password and (when enrolled) a TOTP or recovery code")
def login(body: LoginRequest, request: Request, response: Response, cp: Public) -> SessionOut:
    """Throttled per client address, per (account, address) and per account, and wrong
    TOTP codes per account (:mod:`apiary.control.throttle`): 429 + Retry-After.
    A browser holding this account's device cookie is throttled as that device instead,
    so nobody else can make its owner wait."""
    account = account_key(body.email)
    client = cp.throttle.device_client(request.cookies.get(DEVICE_COOKIE), account)
    client = client or _client(cp, request)
    cp.throttle.admit_attempt(client)
    issued = accounts.login(cp, email=body.email, password=body.password,
                            totp_code=body.totp_code, recovery_code=body.recovery_code,
                            client=client)
    set_session_cookie(cp, response, issued)
    response.set_cookie(
        DEVICE_COOKIE, cp.throttle.new_device_token(account), max_age=int(KNOWN_CLIENT_TTL_S),
        httponly=True, samesite="lax", secure=cp.issuer.startswith("https://"), path="/",
    )
    with cp.transaction() as db:
        enrolled = totp.is_enrolled(db, issued.user.id)
    return session_out(issued, enrolled)


@router.post("/v1/auth/logout", status_code=204, summary="End the current session")
def logout(response: Response, caller: UserCaller) -> None:
    session_id = caller.user.session_id
    if session_id is not None:
        with caller.cp.transaction() as db:
            revoke_session(caller.cp, db, session_id)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


@router.post("/v1/auth/reauthenticate", response_model=SessionOut,
             summary="Prove the password (and TOTP) again: the session is replaced by a new "
             "one that counts as a recent login")
def reauthenticate(body: ReauthenticateRequest, request: Request, response: Response,
                   caller: UserCaller) -> SessionOut:
    """Check the caller's password and second factor exactly like a login (same failure
    counting and lockout), issue a fresh session and revoke the one that called. Managing
    keys, members, roles and the organization needs a session younger than
    ``cp_recent_auth_s``; an account without a password re-authenticates by SSO login."""
    user = caller.user
    client = _client(caller.cp, request)
    caller.cp.throttle.admit_attempt(client)
    issued = accounts.login(caller.cp, email=user.email, password=body.password,
                            totp_code=body.totp_code, recovery_code=body.recovery_code,
                            client=client)
    with caller.cp.transaction() as db:
        if issued.user.id != user.user_id:  # cannot happen while emails are unique
            revoke_session(caller.cp, db, issued.session.id)
            raise AuthenticationFailed("the credentials are not this session's account")
        if user.session_id is not None:
            revoke_session(caller.cp, db, user.session_id)
        enrolled = totp.is_enrolled(db, issued.user.id)
    set_session_cookie(caller.cp, response, issued)
    return session_out(issued, enrolled)


@router.get("/v1/me", response_model=MeOut, summary="The caller's account and memberships")
def me(caller: UserCaller) -> MeOut:
    with caller.cp.transaction() as db:
        user = db.get(User, caller.user.user_id)
        assert user is not None
        rows = db.execute(
            select(Membership, Role).join(Role, Role.id == Membership.role_id)
            .where(Membership.user_id == user.id)
        )
        memberships = []
        for membership, role in rows:
            node = (db.get(Project, membership.project_id) if membership.project_id
                    else db.get(Workspace, membership.workspace_id) if membership.workspace_id
                    else db.get(Organization, membership.org_id))
            memberships.append(MembershipOut(
                id=membership.id, user_id=user.id, org_id=membership.org_id,
                workspace_id=membership.workspace_id, project_id=membership.project_id,
                role=role.name, scope_name=node.name if node else None,
            ))
        return MeOut(user=user_out(user, totp.is_enrolled(db, user.id)), memberships=memberships)


@router.post("/v1/me/password", response_model=PasswordChangeOut,
             summary="Change the password; every other session of the account ends")
def change_password(body: PasswordChangeRequest, request: Request,
                    caller: UserCaller) -> PasswordChangeOut:
    client = _client(caller.cp, request)
    caller.cp.throttle.admit_attempt(client)
    revoked = accounts.change_password(
        caller.cp, user_id=caller.user.user_id, current_password=body.current_password,
        new_password=body.new_password, keep_session_id=caller.user.session_id,
        client=client,
    )
    return PasswordChangeOut(revoked_sessions=revoked)


@router.post("/v1/me/totp", response_model=TotpEnrolmentOut, status_code=201,
             summary="Start TOTP enrolment: the secret and otpauth URI, shown once")
def totp_enrol(caller: UserCaller) -> TotpEnrolmentOut:
    with caller.cp.transaction() as db:
        user = db.get(User, caller.user.user_id)
        assert user is not None
        enrolment = totp.begin_enrolment(caller.cp, db, user)
    return TotpEnrolmentOut(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)


@router.post("/v1/me/totp/verify", response_model=RecoveryCodesOut,
             summary="Finish TOTP enrolment with a code; ten recovery codes, shown once")
def totp_verify(body: TotpCodeRequest, request: Request,
                caller: UserCaller) -> RecoveryCodesOut:
    caller.cp.throttle.admit_attempt(_client(caller.cp, request))
    with caller.cp.transaction() as db:
        user = db.get(User, caller.user.user_id)
        assert user is not None
        codes = totp.confirm_enrolment(caller.cp, db, user, body.code)
    return RecoveryCodesOut(recovery_codes=codes)


@router.post("/v1/me/totp/disable", status_code=204,
             summary="Turn TOTP off, with a current TOTP code or a recovery code")
def totp_disable(body: TotpCodeRequest, request: Request, caller: UserCaller) -> None:
    caller.cp.throttle.admit_attempt(_client(caller.cp, request))
    with caller.cp.transaction() as db:
        user = db.get(User, caller.user.user_id)
        assert user is not None
        totp.disable(caller.cp, db, user, body.code)


@router.post("/v1/auth/token", response_model=TokenOut, tags=["tokens"],
             summary="Exchange an API key or a user session for an access token: for a data "
             "plane (audience = its id) or for this control plane (audience = the issuer)")
def token(body: TokenRequest, request: Request, cp: Public) -> TokenOut:
    """A data-plane token carries only data-plane permissions; a control-plane token the
    key's permissions or the user's minus those that need a recent login
    (:mod:`apiary.control.tokens`). A token is never exchanged for another token.

    A federated data plane asking on behalf of a key sends its identity JWT as
    ``Apiary-Data-Plane``: the audience is then the data plane it proves (401 for a
    forged, revoked or unknown one; a body ``audience`` naming another is 400). A key
    whose project another data plane serves gets 421 ``wrong_data_plane`` with that
    data plane's URL (``data_plane_url``)."""
    credential = credential_of(request)
    if looks_like_jwt(credential):
        raise AuthenticationFailed("a token cannot be exchanged for another token: send an "
                                   "API key or a session")
    with cp.transaction() as db:
        audience = _audience(cp, db, body, request.headers.get(DATA_PLANE_IDENTITY_HEADER))
        if credential.startswith(SESSION_PREFIX):
            session, user = resolve_session(cp, db, credential)
            cp.throttle.admit_session_exchange(_client(cp, request), user.id)
            verification.require_may_hold_tokens(user)
            if body.project_id is None:
                raise InvalidRequest("a user's token is for one project: send project_id",
                                     field="project_id")
            principal = load_principal(db, user, session.id)
            issued = exchange_session(cp, db, principal, audience, body.project_id)
        else:
            issued = exchange_api_key(cp, db, credential, audience, body.project_id)
    return TokenOut.model_validate(issued.to_body())


def _audience(cp: ControlPlane, db: Session, body: TokenRequest, identity: str | None) -> str:
    if identity is None:
        if body.audience is None:
            raise InvalidRequest("send audience (a data plane's id, or the issuer URL)",
                                 field="audience")
        return body.audience
    plane = verify_identity(db, identity.strip(), issuer=cp.issuer, now=cp.now())
    if body.audience is not None and body.audience != plane.id:
        raise InvalidRequest(f"audience must be this data plane's own id ({plane.id}) when "
                             f"it sends its identity ({DATA_PLANE_IDENTITY_HEADER})",
                             field="audience")
    return plane.id


@router.get("/.well-known/jwks.json", tags=["tokens"],
            summary="The public keys that verify access tokens (next, active, retiring)")
def jwks(response: Response, cp: Public) -> dict[str, list[dict[str, Any]]]:
    with cp.transaction() as db:
        document = cp.signing.jwks(db)
    response.headers["Cache-Control"] = f"public, max-age={cp.settings.cp_jwks_cache_s}"
    return document
