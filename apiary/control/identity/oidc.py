"""OpenID Connect login: authorization-code flow with PKCE (S256), state and nonce.

:meth:`OidcLogin.begin` stores a single-use login state (hashed ``state``, ``nonce``,
PKCE verifier, the hash of the browser's binder; 10 minutes) and returns the provider's
authorization URL. :meth:`OidcLogin.complete` consumes the state (even if what follows
fails), refuses it unless the callback comes from the browser that started the login (its
HttpOnly, SameSite=Lax binder cookie hashes to the stored one: otherwise an attacker could
make a victim's browser finish the attacker's login, *login CSRF*), redeems the code at the
token endpoint with the verifier and the client's credentials, and validates the ID token.

Talking to the provider (discovery, JWKS, the token endpoint, what makes an ID token valid,
the outbound-URL policy on every endpoint) is :mod:`apiary.control.oidc_client`, through
the control plane's ``cp.oidc``. Network calls happen outside database transactions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import urlencode

from sqlalchemy import delete, select

from apiary.control._common import token_hash
from apiary.control.db import OidcProvider, SsoLoginState
from apiary.control.identity.sso import SsoOutcome, VerifiedIdentity, client_secret, safe_return_to
from apiary.control.service import ControlPlane
from apiary.errors import AuthenticationFailed, NotFound

STATE_TTL = timedelta(minutes=10)


class OidcLogin:
    """The OIDC implementation of :class:`~apiary.control.identity.sso.SsoProtocol`
    (:data:`OIDC`). It holds nothing: providers' metadata and keys are cached by the
    control plane's :class:`~apiary.control.oidc_client.OidcClient` (``cp.oidc``)."""

    @staticmethod
    def redirect_uri(cp: ControlPlane) -> str:
        return f"{cp.issuer}/v1/sso/oidc/callback"

    # --- step 1 ---------------------------------------------------------------------

    def begin(self, cp: ControlPlane, provider_id: str, *, return_to: str, binder: str,
              link_user_id: str | None = None) -> str:
        with cp.transaction() as db:
            provider = db.get(OidcProvider, provider_id)
            if provider is None or not provider.enabled:
                raise NotFound("SSO provider not found")
            issuer, client_id, scopes, org_id = (provider.issuer, provider.client_id,
                                                 provider.scopes, provider.org_id)
        metadata = cp.oidc.metadata(issuer)
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        now = cp.now()
        with cp.transaction() as db:
            db.execute(delete(SsoLoginState).where(SsoLoginState.expires_at <= now))
            db.add(SsoLoginState(
                state_hash=token_hash(state), provider_id=provider_id, org_id=org_id,
                nonce=nonce, code_verifier=verifier, return_to=safe_return_to(return_to),
                created_at=now, expires_at=now + STATE_TTL, binder_hash=token_hash(binder),
                link_user_id=link_user_id,
            ))
        query = urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri":
            self.redirect_uri(cp), "scope": scopes, "state": state, "nonce": nonce,
            "code_challenge": challenge.rstrip(b"=").decode(), "code_challenge_method": "S256",
        })
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        return f"{metadata.authorization_endpoint}{separator}{query}"

    # --- step 2 ---------------------------------------------------------------------

    def complete(self, cp: ControlPlane, params: Mapping[str, str], *,
                 binder: str | None) -> SsoOutcome:
        if "error" in params:
            raise AuthenticationFailed(f"the identity provider refused: {params['error']}")
        state, code = params.get("state"), params.get("code")
        if not state or not code:
            raise AuthenticationFailed("the SSO callback lacks state or code")
        with cp.transaction() as db:  # consume the state first: single use, even on failure
            pending = db.get(SsoLoginState, token_hash(state))
            if pending is None:
                raise AuthenticationFailed("unknown or already used SSO login state")
            db.delete(pending)
            provider = db.get(OidcProvider, pending.provider_id)
            live = (pending.expires_at > cp.now() and provider is not None
                    and provider.enabled)
            if live and provider is not None:
                secret = client_secret(cp, provider)
                issuer, client_id = provider.issuer, provider.client_id
            nonce, verifier = pending.nonce, pending.code_verifier
            org_id, provider_id, return_to = pending.org_id, pending.provider_id, pending.return_to
            binder_hash, link_user_id = pending.binder_hash, pending.link_user_id
        # Raised after the transaction, so that the state's deletion is committed.
        if binder is None:
            raise AuthenticationFailed(
                "this SSO login was not started in this browser (its binder cookie is "
                "missing); start the login again from this browser")
        if binder_hash is None or not hmac.compare_digest(binder_hash, token_hash(binder)):
            raise AuthenticationFailed(
                "this SSO login was started in another browser (its binder cookie does not "
                "match); start the login again from this browser")
        if not live:
            raise AuthenticationFailed("the SSO login took too long; start again")
        metadata = cp.oidc.metadata(issuer)
        id_token = cp.oidc.redeem_code(metadata, client_id=client_id, secret=secret, code=code,
                                       verifier=verifier, redirect_uri=self.redirect_uri(cp))
        claims = cp.oidc.validate_id_token(id_token, metadata=metadata, client_id=client_id,
                                           nonce=nonce, now=cp.now().timestamp())
        amr = claims.get("amr")
        identity = VerifiedIdentity(
            subject=str(claims["sub"]), email=claims.get("email"),
            email_verified=claims.get("email_verified") is True, name=claims.get("name"),
            amr=tuple(str(a) for a in amr) if isinstance(amr, list) else (),
        )
        return SsoOutcome(org_id, provider_id, identity, return_to, link_user_id)

OIDC = OidcLogin()


def pending_logins(cp: ControlPlane) -> int:
    """SSO logins started and not yet completed or expired (for tests and metrics)."""
    with cp.transaction() as db:
        return len(db.execute(select(SsoLoginState.state_hash)).all())
