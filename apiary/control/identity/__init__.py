"""Identity: accounts and passwords, login sessions, TOTP, single sign-on.

- :mod:`.accounts`: sign-up, throttled login, password change.
- :mod:`.sessions`: opaque session tokens (hash stored), expiry, revocation.
- :mod:`.totp`: TOTP enrolment and verification, single-use recovery codes.
- :mod:`.sso`: the protocol-neutral SSO seam (OIDC now, SAML 2.0 later), provisioning and
  linking of identities, the second factor after SSO.
- :mod:`.oidc`: OpenID Connect authorization-code flow with PKCE, bound to the browser.
- :mod:`.verification`: mailed email-verification links; what unverified accounts may not do.
- :mod:`.domains`: email domains organizations claim and instance admins approve.
- :mod:`.mail`: outgoing mail (verification, invitations), queued in cpdb for the outbox.

Throttling of credential checks is :mod:`apiary.control.throttle`, and talking to OIDC
providers :mod:`apiary.control.oidc_client`: the control plane's state holds them, so they
sit below :mod:`apiary.control.service`, which every module here imports.
"""

from apiary.control.identity.accounts import (
    change_password,
    create_user,
    find_user_by_email,
    login,
)
from apiary.control.identity.sessions import (
    SESSION_PREFIX,
    IssuedSession,
    create_session,
    resolve_session,
    revoke_session,
    revoke_user_sessions,
)
from apiary.control.identity.totp import TotpEnrolment

__all__ = [
    "SESSION_PREFIX",
    "IssuedSession",
    "TotpEnrolment",
    "change_password",
    "create_session",
    "create_user",
    "find_user_by_email",
    "login",
    "resolve_session",
    "revoke_session",
    "revoke_user_sessions",
]
