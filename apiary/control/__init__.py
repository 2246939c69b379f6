"""The control plane: identity, tenancy, roles, API keys, signed tokens, configuration.

It owns who may do what and never sees trace data; data planes trust it only through the
short-lived ES256 tokens it signs and the public keys it publishes (``README.md`` here
states the contract). Modules, one idea each:

- :mod:`.db` — cpdb models and Alembic migrations (PostgreSQL or SQLite)
- :mod:`.service` — :class:`ControlPlane`, the per-process state operations run with
- :mod:`.permissions`, :mod:`.authz` — the permission catalog and :func:`authorize`
- :mod:`.identity` — accounts, sessions, TOTP, SSO (OIDC; SAML seam)
- :mod:`.tenancy`, :mod:`.roles`, :mod:`.memberships`, :mod:`.invitations`
- :mod:`.apikeys`, :mod:`.signing`, :mod:`.tokens`, :mod:`.dataplanes`
- :mod:`.config` — prompt templates, evaluator configurations, alert definitions
- :mod:`.federation` — federated data planes: bootstrap and identity keys, the config log
  they follow, and the gRPC stream's server (``federation.server``)
- :mod:`.api` — :func:`create_control_plane_app`; :mod:`.admin`, :mod:`.cli` — operators
- the service's collaborators, which never import it: :mod:`.envelope` (sealing secrets),
  :mod:`.passwords`, :mod:`.throttle` (of credential checks), :mod:`.key_usage`,
  :mod:`.oidc_client` (talking to OIDC providers)

It imports nothing from :mod:`apiary.dataplane`: the shapes of keys and tokens both planes
recognise are :mod:`apiary.credentials`, the HTTP helpers :mod:`apiary.web`.
"""

from apiary.control.authz import (
    SYSTEM,
    KeyPrincipal,
    Principal,
    Resource,
    SystemPrincipal,
    UserPrincipal,
    authorize,
)
from apiary.control.permissions import BUILTIN_ROLES, KEY_GRANTABLE, Permission
from apiary.control.service import ControlPlane

__all__ = [
    "BUILTIN_ROLES",
    "KEY_GRANTABLE",
    "SYSTEM",
    "ControlPlane",
    "KeyPrincipal",
    "Permission",
    "Principal",
    "Resource",
    "SystemPrincipal",
    "UserPrincipal",
    "authorize",
]
