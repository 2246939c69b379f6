"""Authentication: the one seam through which every data-plane request is identified.

A handler never inspects credentials itself. It declares the permission it needs; the API
layer asks the configured :class:`Authenticator` to turn the request's bearer credential
into a :class:`Principal` (who, which tenant, which permissions) and checks the permission.
The control plane's signed tokens and API-key verification plug in here as further
:class:`Authenticator` implementations; handlers do not change.

"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from apiary.errors import AuthenticationFailed, PermissionDenied


class Permission(StrEnum):
    """What a data-plane credential may do. The control plane's tokens carry these strings in
    their ``permissions`` claim; strings the data plane does not know are ignored (they grant
    nothing here), so the control plane can add permissions before every data plane knows them.
    """

    EVENTS_WRITE = "events:write"
    EVENTS_READ = "events:read"
    DATASETS_READ = "datasets:read"
    DATASETS_WRITE = "datasets:write"
    # Control-plane configuration the data plane serves through the seam (prompt templates
    # as /v1/configurations, evaluators as /v1/metrics): checked here first, then again by
    # the control plane, which holds the configuration.
    PROMPTS_READ = "prompts:read"
    PROMPTS_WRITE = "prompts:write"
    EVALUATORS_READ = "evaluators:read"
    EVALUATORS_WRITE = "evaluators:write"
    # The LLM proxy: calling it (traced into the caller's project), and managing the
    # workspace's provider credentials.
    PROXY_USE = "proxy:use"
    PROXY_MANAGE = "proxy:manage"
    # Human review: annotation queues (reading, configuring) and recording scores.
    QUEUES_READ = "queues:read"
    QUEUES_WRITE = "queues:write"
    ANNOTATIONS_WRITE = "annotations:write"


# Permissions whose effect lands in one project: a workspace-scoped credential (no project)
# must not exercise them, or data would be written under an empty project id.
_PROJECT_BOUND = frozenset({Permission.EVENTS_WRITE})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a key or token, the tenant it acts in, what it may do.

    ``project_id`` is ``""`` for a workspace-scoped credential (the control plane's tokens
    with ``project_id: null``); such a principal is refused every project-bound permission
    (writing events) by :meth:`require`. ``role`` is informational: checks use
    ``permissions``.

    ``workspace_permissions`` are the permissions the subject holds on its *workspace
    itself* (the token's ``workspace_permissions`` claim): a user's role on the workspace
    node, a workspace key's permissions, nothing for a project key. Things shared by every
    project of the workspace (its provider credentials) check these, so a project-level
    admin cannot change what other projects use. Empty unless the credential says otherwise.
    """

    subject: str
    org_id: str
    workspace_id: str
    project_id: str
    permissions: frozenset[Permission]
    role: str | None = None
    workspace_permissions: frozenset[Permission] = frozenset()

    @property
    def workspace_scoped(self) -> bool:
        """True when the credential names a workspace but no project."""
        return not self.project_id

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            raise PermissionDenied(
                f"this credential may not {permission.value.replace(':', ' ')}",
                project_id=self.project_id,
            )
        if permission in _PROJECT_BOUND and self.workspace_scoped:
            raise PermissionDenied(
                f"a workspace-scoped credential may not {permission.value.replace(':', ' ')}; "
                "use a project key"
            )


class Authenticator(Protocol):
    """Turns a bearer credential into a :class:`Principal`, or raises AuthenticationFailed."""

    async def authenticate(self, credential: str) -> Principal: ...


def bearer_credential(authorization: str | None) -> str:
    """The credential of an ``Authorization: Bearer <credential>`` header."""
    if not authorization:
        raise AuthenticationFailed("missing Authorization header; send 'Bearer <api key>'")
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise AuthenticationFailed("Authorization header must be 'Bearer <api key>'")
    return credential
