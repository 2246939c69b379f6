"""The permission catalog and the built-in roles.

A permission is a ``<area>:<verb>`` string. Every control-plane endpoint names exactly one
(see :func:`apiary.control.authz.authorize`); data-plane tokens carry a list of them in their
``permissions`` claim, so the strings are part of the contract between the planes.

Built-in roles are fixed permission sets, nested: ``viewer`` ⊂ ``member`` ⊂ ``admin`` ⊂
``owner``. Custom roles (per organization) are named subsets of :data:`ALL_PERMISSIONS`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Permission(StrEnum):
    # Organization: its settings, custom roles, SSO providers.
    ORG_READ = "org:read"
    ORG_MANAGE = "org:manage"
    # Who belongs where, with which role; invitations.
    MEMBERS_READ = "members:read"
    MEMBERS_MANAGE = "members:manage"
    # Workspaces and projects: create, rename.
    WORKSPACE_READ = "workspace:read"
    WORKSPACE_MANAGE = "workspace:manage"
    PROJECT_READ = "project:read"
    PROJECT_MANAGE = "project:manage"
    # API keys of projects and workspaces.
    KEYS_MANAGE = "keys:manage"
    # Data-plane data: traces/events and datasets.
    EVENTS_WRITE = "events:write"
    EVENTS_READ = "events:read"
    DATASETS_WRITE = "datasets:write"
    DATASETS_READ = "datasets:read"
    # Configuration held by the control plane.
    PROMPTS_WRITE = "prompts:write"
    PROMPTS_READ = "prompts:read"
    EVALUATORS_WRITE = "evaluators:write"
    EVALUATORS_READ = "evaluators:read"
    ALERTS_WRITE = "alerts:write"
    ALERTS_READ = "alerts:read"
    # An org's notification channels (email, Slack, webhooks) and their secrets.
    NOTIFICATIONS_MANAGE = "notifications:manage"
    # The data plane's LLM proxy: calling it, and managing the workspace's provider keys.
    PROXY_USE = "proxy:use"
    PROXY_MANAGE = "proxy:manage"
    # Human review on the data plane: annotation queues and the scores reviewers record.
    QUEUES_READ = "queues:read"
    QUEUES_WRITE = "queues:write"
    ANNOTATIONS_WRITE = "annotations:write"


ALL_PERMISSIONS: frozenset[Permission] = frozenset(Permission)

VIEWER: frozenset[Permission] = frozenset(
    {
        Permission.ORG_READ, Permission.MEMBERS_READ, Permission.WORKSPACE_READ,
        Permission.PROJECT_READ, Permission.EVENTS_READ, Permission.DATASETS_READ,
        Permission.PROMPTS_READ, Permission.EVALUATORS_READ, Permission.ALERTS_READ,
        Permission.QUEUES_READ,
    }
)
MEMBER: frozenset[Permission] = VIEWER | {
    Permission.EVENTS_WRITE, Permission.DATASETS_WRITE, Permission.PROMPTS_WRITE,
    Permission.EVALUATORS_WRITE, Permission.ALERTS_WRITE,
    Permission.PROXY_USE, Permission.QUEUES_WRITE, Permission.ANNOTATIONS_WRITE,
}
ADMIN: frozenset[Permission] = MEMBER | {
    Permission.MEMBERS_MANAGE, Permission.WORKSPACE_MANAGE, Permission.PROJECT_MANAGE,
    Permission.KEYS_MANAGE, Permission.PROXY_MANAGE, Permission.NOTIFICATIONS_MANAGE,
}
OWNER: frozenset[Permission] = ALL_PERMISSIONS

#: Built-in role name → its permissions. Their ids in the ``roles`` table are these names.
BUILTIN_ROLES: dict[str, frozenset[Permission]] = {
    "owner": OWNER,
    "admin": ADMIN,
    "member": MEMBER,
    "viewer": VIEWER,
}

#: What an API key may be granted: data and configuration access, never management, so a
#: leaked key cannot mint keys, invite people or change roles.
KEY_GRANTABLE: frozenset[Permission] = frozenset(
    {
        Permission.WORKSPACE_READ, Permission.PROJECT_READ,
        Permission.EVENTS_WRITE, Permission.EVENTS_READ,
        Permission.DATASETS_WRITE, Permission.DATASETS_READ,
        Permission.PROMPTS_WRITE, Permission.PROMPTS_READ,
        Permission.EVALUATORS_WRITE, Permission.EVALUATORS_READ,
        Permission.ALERTS_WRITE, Permission.ALERTS_READ,
        # Not proxy:manage: a leaked key must not be able to swap a workspace's provider
        # key or point it at another endpoint.
        Permission.PROXY_USE, Permission.QUEUES_READ, Permission.QUEUES_WRITE,
        Permission.ANNOTATIONS_WRITE,
    }
)

#: What a data-plane token may carry: the permissions a data plane checks itself. Tokens
#: minted for a data plane are intersected with this set (``apiary.control.tokens``), so no
#: management permission (keys, members, roles, org/workspace/project changes) ever leaves
#: the control plane inside one. ``prompts:*`` and ``evaluators:*`` are included because the
#: data plane checks them locally before it serves configuration (``/v1/configurations``,
#: ``/v1/metrics``, evaluations) by forwarding the caller's *API key* to the control plane,
#: which checks them again; a data-plane token is never forwarded, so these grant nothing at
#: the control plane. ``alerts:*`` and ``workspace:read``/``project:read`` are not checked by
#: any data plane and stay out.
DATA_PLANE: frozenset[Permission] = frozenset(
    {
        Permission.EVENTS_WRITE, Permission.EVENTS_READ,
        Permission.DATASETS_WRITE, Permission.DATASETS_READ,
        Permission.PROMPTS_READ, Permission.PROMPTS_WRITE,
        Permission.EVALUATORS_READ, Permission.EVALUATORS_WRITE,
        Permission.PROXY_USE, Permission.PROXY_MANAGE,
        Permission.QUEUES_READ, Permission.QUEUES_WRITE, Permission.ANNOTATIONS_WRITE,
    }
)

#: Permissions whose routes need a control-plane *session* with recent authentication
#: (:mod:`apiary.control.api._guards`): they mint credentials or change who may do what, so
#: they are account-takeover vectors. No API key or token can exercise them.
RECENT_AUTH: frozenset[Permission] = frozenset(
    {Permission.KEYS_MANAGE, Permission.MEMBERS_MANAGE, Permission.ORG_MANAGE}
)

#: What a new ingestion key may do when its creator names nothing else.
DEFAULT_KEY_PERMISSIONS: frozenset[Permission] = frozenset(
    {Permission.EVENTS_WRITE, Permission.EVENTS_READ}
)


def parse_permissions(values: Iterable[str]) -> frozenset[Permission]:
    """The catalog entries named by ``values``; raises ValueError naming unknown ones."""
    values = list(values)
    unknown = sorted(v for v in values if v not in _BY_VALUE)
    if unknown:
        raise ValueError(f"unknown permission(s): {', '.join(unknown)}")
    return frozenset(_BY_VALUE[v] for v in values)


def sorted_values(permissions: frozenset[Permission]) -> list[str]:
    """Permissions as a sorted list of strings: the stable form for JSON and tokens."""
    return sorted(p.value for p in permissions)


_BY_VALUE = {p.value: p for p in Permission}
