"""The operator: who may use the data plane's admin API (``/v1/admin/*``).

No permission the control plane grants reaches across tenants on a data plane, and what the
admin API serves does: a dead letter holds whole events of any project. So the admin is not
a principal of the control plane but whoever holds the data plane's own ``admin_token``
(``APIARY_ADMIN_TOKEN``), a secret of the data plane's operator like its NATS URL, compared
in constant time. API keys and the control plane's tokens are never admins, whatever their
role or permissions; with no ``admin_token`` configured, the admin API is closed (403) and
the operator uses ``apiary dlq`` on a host holding the data directory or the object store's
credentials.
"""

from __future__ import annotations

import hmac

from pydantic import SecretStr

from apiary.dataplane.auth._seam import bearer_credential
from apiary.errors import PermissionDenied


def require_operator(admin_token: SecretStr | None, authorization: str | None) -> None:
    """Return if ``authorization`` carries ``admin_token``; :class:`AuthenticationFailed`
    (401) without a bearer credential, :class:`PermissionDenied` (403) for any other
    credential or when no admin token is configured."""
    credential = bearer_credential(authorization)
    if admin_token is None:
        raise PermissionDenied("the admin API is disabled on this data plane (no "
                               "APIARY_ADMIN_TOKEN); use `apiary dlq` on the data plane's host")
    expected = admin_token.get_secret_value().encode()
    if not hmac.compare_digest(credential.encode(), expected):
        raise PermissionDenied("the admin API takes the data plane's admin token only; API keys "
                               "and user tokens are never admins")
