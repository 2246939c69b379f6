"""Authorization: the one place that decides whether a caller may do something.

Callers of the control plane are :class:`UserPrincipal` (a person, through a login session),
:class:`KeyPrincipal` (an API key, or a :class:`TokenPrincipal`: a control-plane token this
control plane signed, which carries a key's or a user's tenant and permissions) or
:data:`SYSTEM` (the operator's CLI, which has the database anyway). Every endpoint names
one :class:`~apiary.control.permissions.Permission` and the :class:`Resource`
(organization, workspace or project) it acts on, and calls :func:`authorize`; nothing
else checks roles.

Rules:

- A user's role on a resource is that of their most specific membership on its path
  (project, then workspace, then organization): an organization role applies to all its
  workspaces and projects unless a workspace or project membership overrides it. An
  organization *owner* is never overridden downwards, so an org can always be administered.
- A project key acts only on its project; a workspace key on its workspace and the
  projects in it. Neither acts on anything above its scope.
- A caller with no role at all on the resource's path gets :class:`NotFound`, so that the
  existence of another tenant's things is not revealed; a caller with a role that lacks the
  permission gets :class:`PermissionDenied`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from apiary.control.permissions import ALL_PERMISSIONS, Permission
from apiary.errors import NotFound, PermissionDenied


@dataclass(frozen=True, slots=True)
class Resource:
    """A node of the tenancy tree. A project names all three ids, a workspace two."""

    org_id: str
    workspace_id: str | None = None
    project_id: str | None = None

    def __post_init__(self) -> None:
        if self.project_id is not None and self.workspace_id is None:
            raise ValueError("a project resource needs its workspace id")

    @property
    def kind(self) -> str:
        if self.project_id is not None:
            return "project"
        return "workspace" if self.workspace_id is not None else "organization"

    def path(self) -> list[str]:
        """Ids from the most specific node up to the organization."""
        ids = [self.project_id, self.workspace_id, self.org_id]
        return [i for i in ids if i is not None]


@dataclass(frozen=True, slots=True)
class Grant:
    """One membership of a user: a role on one tenancy node (``scope_id``)."""

    scope_id: str
    org_id: str
    role: str
    permissions: frozenset[Permission]


@dataclass(frozen=True, slots=True)
class UserPrincipal:
    """A logged-in user with all their memberships, loaded once per request.

    ``authenticated_at`` is when the session proved the user's credentials (its creation:
    login, SSO or re-authentication); management that needs a recent login compares it
    with ``cp_recent_auth_s``. None when unknown, which never counts as recent.
    """

    user_id: str
    email: str
    session_id: str | None
    grants: dict[str, Grant] = field(default_factory=dict)  # scope_id -> grant
    authenticated_at: datetime | None = None

    @property
    def subject(self) -> str:
        return f"user:{self.user_id}"


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    """An API key: its scope (a project, or a whole workspace) and its permissions."""

    key_id: str
    org_id: str
    workspace_id: str
    project_id: str | None
    permissions: frozenset[Permission]

    @property
    def subject(self) -> str:
        return f"key:{self.key_id}"


@dataclass(frozen=True, slots=True)
class TokenPrincipal(KeyPrincipal):
    """A control-plane token (``aud`` = this issuer, :mod:`apiary.control.tokens`). It
    acts exactly like a key with the token's tenant and permissions (never one that needs a
    recent login); ``key_id`` holds the token's ``jti`` and :attr:`subject` its ``sub``
    (``key:...`` or ``user:...``)."""

    token_subject: str = ""

    @property
    def subject(self) -> str:
        return self.token_subject


@dataclass(frozen=True, slots=True)
class SystemPrincipal:
    """The operator (admin CLI, bootstrap): may do everything, on every tenant."""

    @property
    def subject(self) -> str:
        return "system"


SYSTEM: Final = SystemPrincipal()

Principal = UserPrincipal | KeyPrincipal | SystemPrincipal


@dataclass(frozen=True, slots=True)
class Access:
    """A caller's standing on a resource: the role that applies and what it grants."""

    role: str
    permissions: frozenset[Permission]


def access(principal: Principal, resource: Resource) -> Access | None:
    """The role and permissions ``principal`` has on ``resource``, or None if it has none."""
    if isinstance(principal, SystemPrincipal):
        return Access("system", ALL_PERMISSIONS)
    if isinstance(principal, KeyPrincipal):
        return _key_access(principal, resource)
    org_grant = principal.grants.get(resource.org_id)
    if org_grant is not None and org_grant.role == "owner":
        return Access(org_grant.role, org_grant.permissions)
    for scope_id in resource.path():
        grant = principal.grants.get(scope_id)
        # The org check guards against a grant whose scope id collides across tenants.
        if grant is not None and grant.org_id == resource.org_id:
            return Access(grant.role, grant.permissions)
    return None


def _key_access(key: KeyPrincipal, resource: Resource) -> Access | None:
    if resource.org_id != key.org_id or resource.workspace_id != key.workspace_id:
        return None
    if key.project_id is not None and resource.project_id != key.project_id:
        return None
    return Access("api_key", key.permissions)


def authorize(principal: Principal, permission: Permission, resource: Resource) -> Access:
    """Allow ``principal`` to exercise ``permission`` on ``resource``, or raise.

    Raises :class:`NotFound` when the principal has no access to the resource at all and
    :class:`PermissionDenied` when its role lacks ``permission``. Returns the access that
    allowed it (for checks that depend on the caller's own permissions, like granting roles).
    """
    granted = access(principal, resource)
    if granted is None:
        raise NotFound(f"{resource.kind} not found")
    if permission not in granted.permissions:
        raise PermissionDenied(
            f"your role ({granted.role}) may not {permission.value.replace(':', ' ')} "
            f"in this {resource.kind}"
        )
    return granted


def may(principal: Principal, permission: Permission, resource: Resource) -> bool:
    """Whether :func:`authorize` would allow it: for filtering lists, never for guarding."""
    granted = access(principal, resource)
    return granted is not None and permission in granted.permissions
