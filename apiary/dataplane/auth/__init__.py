"""Authentication and authorization of data-plane requests.

The seam (:mod:`apiary.dataplane.auth._seam`): an :class:`Authenticator` turns a bearer credential
into a :class:`Principal`; handlers only declare a :class:`Permission`. Implementations:
:class:`ApiKeyAuthenticator` (API keys checked against stored hashes),
:class:`JwtAuthenticator` (the control plane's ES256 tokens, keys from its JWKS via
:class:`JwksCache`), :class:`ControlPlaneKeyAuthenticator` (API keys exchanged at the control
plane for such tokens, cached) and :class:`ChainedAuthenticator` (routes a credential by its
shape to the authenticators for that shape). :func:`require_operator` guards the admin API
(``/v1/admin/*``): the data plane's own ``admin_token``, never a control-plane credential.

What a credential looks like (API-key format, minting, the JWT shape) is not here but in
:mod:`apiary.credentials`, which the control plane uses too.
"""

from apiary.dataplane.auth._chain import ChainedAuthenticator, CredentialShape, credential_shape
from apiary.dataplane.auth._exchange import (
    TOKEN_PATH,
    ControlPlaneKeyAuthenticator,
    control_plane_authenticator,
)
from apiary.dataplane.auth._jwt import (
    JWKS_PATH,
    JwksCache,
    JwtAuthenticator,
    VerifiedToken,
    parse_jwks,
)
from apiary.dataplane.auth._keys import ApiKeyAuthenticator, StoredKey
from apiary.dataplane.auth._operator import require_operator
from apiary.dataplane.auth._seam import Authenticator, Permission, Principal, bearer_credential

__all__ = [
    "JWKS_PATH",
    "TOKEN_PATH",
    "ApiKeyAuthenticator",
    "Authenticator",
    "ChainedAuthenticator",
    "ControlPlaneKeyAuthenticator",
    "CredentialShape",
    "JwksCache",
    "JwtAuthenticator",
    "Permission",
    "Principal",
    "StoredKey",
    "VerifiedToken",
    "bearer_credential",
    "control_plane_authenticator",
    "credential_shape",
    "parse_jwks",
    "require_operator",
]
