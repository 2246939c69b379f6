"""Choosing an authenticator by the shape of the credential.

A data plane accepts two kinds of bearer credential: the control plane's signed tokens
(compact JWS, ``xxx.yyy.zzz``) and API keys (one opaque word, e.g. ``hh_ingst_...``). The
shapes are disjoint (keys contain no dots), so each credential is classified once and only
the authenticators for its shape see it; anything else is refused without any work.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum

from apiary.credentials import looks_like_jwt
from apiary.dataplane.auth._seam import Authenticator, Principal
from apiary.errors import AuthenticationFailed

# One word of 16-256 URL-safe characters: every key Apiary mints, and nothing with a dot,
# so a key never reaches the token verifier and a token never reaches the control plane's
# key exchange.
_API_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{15,255}$")


class CredentialShape(StrEnum):
    JWT = "jwt"
    API_KEY = "api_key"
    UNKNOWN = "unknown"


def credential_shape(credential: str) -> CredentialShape:
    if looks_like_jwt(credential):
        return CredentialShape.JWT
    if _API_KEY.match(credential):
        return CredentialShape.API_KEY
    return CredentialShape.UNKNOWN


class ChainedAuthenticator:
    """Tries, in order, the authenticators registered for the credential's shape.

    The first to return a principal wins. An :class:`AuthenticationFailed` moves on to the
    next one (so local bootstrap keys can be tried before the control plane); if all fail,
    the last failure is raised. Any other error (the control plane unreachable) is raised at
    once: a credential is never accepted or refused because a verifier was down.
    """

    def __init__(self, routes: Sequence[tuple[CredentialShape, Authenticator]]) -> None:
        self.routes = list(routes)

    async def authenticate(self, credential: str) -> Principal:
        shape = credential_shape(credential)
        failure: AuthenticationFailed | None = None
        for accepts, authenticator in self.routes:
            if accepts is not shape:
                continue
            try:
                return await authenticator.authenticate(credential)
            except AuthenticationFailed as exc:
                failure = exc
        if failure is not None:
            raise failure
        if shape is CredentialShape.UNKNOWN:
            raise AuthenticationFailed(
                "the credential is neither an API key nor a signed token"
            )
        raise AuthenticationFailed(
            "this data plane does not accept "
            + ("signed tokens" if shape is CredentialShape.JWT else "API keys")
        )
