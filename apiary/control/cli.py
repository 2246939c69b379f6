"""``apiary users|domains|projects|keys|data-planes``: administration from the command line.

:func:`add_control_commands` adds the subcommands to the ``apiary`` parser; each sets
``func`` to a handler taking the parsed arguments and returning an exit code (errors are
raised as :mod:`apiary.errors` and turned into exit codes by ``apiary``'s ``main``).
``--json`` prints the result as one JSON document; otherwise as ``key: value`` lines.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apiary.control import admin
from apiary.settings import ApiarySettings, load_settings

Handler = Callable[[argparse.Namespace], int]


def _settings(args: argparse.Namespace) -> ApiarySettings:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    return load_settings(**overrides)


def _print(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        if isinstance(value, list):
            print(f"{key}:")
            for item in value:
                print("  - " + (json.dumps(item) if isinstance(item, dict) else str(item)))
        else:
            print(f"{key}: {'' if value is None else value}")


def _run(action: Callable[[argparse.Namespace, ApiarySettings], dict[str, Any]]) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        _print(args, action(args, _settings(args)))
        return 0
    return handler


def _password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if args.prompt_password:
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise SystemExit("apiary: the passwords differ")
        return first
    return None  # generated and printed once


def add_control_commands(
    sub: Any, common: Callable[[argparse.ArgumentParser], None] | None = None
) -> None:
    """Add ``users``, ``projects``, ``keys`` and ``data-planes`` to ``sub`` (the
    ``add_subparsers()`` object of the ``apiary`` parser). ``common`` adds the options every
    command shares (``--data-dir``)."""

    def leaf(parent: Any, name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = parent.add_parser(name, help=help_text,
                                                            description=help_text)
        if common is not None:
            common(parser)
        else:
            parser.add_argument("--data-dir", help="data directory (env APIARY_DATA_DIR, "
                                "default ~/.apiary)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        return parser

    users = sub.add_parser("users", help="manage user accounts").add_subparsers(
        dest="users_command", required=True, metavar="COMMAND")
    create_user = leaf(users, "create", "create a user (prints a generated password once "
                       "unless one is given)")
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--name", dest="display_name")
    given = create_user.add_mutually_exclusive_group()
    given.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of stdin")
    given.add_argument("--prompt-password", action="store_true",
                       help="ask for the password on the terminal")
    create_user.set_defaults(func=_run(lambda a, s: admin.users_create(
        s, email=a.email, password=_password(a), display_name=a.display_name)))
    reset = leaf(users, "reset-password", "replace a user's password (prints a generated one "
                 "once unless one is given), log out all their sessions and clear a lockout")
    reset.add_argument("email", help="the user's email (e.g. admin@apiary.local)")
    given_reset = reset.add_mutually_exclusive_group()
    given_reset.add_argument("--password-stdin", action="store_true",
                             help="read the password from the first line of stdin")
    given_reset.add_argument("--prompt-password", action="store_true",
                             help="ask for the password on the terminal")
    reset.set_defaults(func=_run(lambda a, s: admin.users_reset_password(
        s, email=a.email, password=_password(a))))

    verify_link = leaf(users, "verify-link", "print a fresh email-verification link for an "
                       "unverified account (or a pending email change) when no SMTP server "
                       "is configured; the link is a secret")
    verify_link.add_argument("email", help="the address to verify")
    verify_link.set_defaults(func=_run(lambda a, s: admin.users_verify_link(s, email=a.email)))
    instance_admin = leaf(users, "set-instance-admin", "let a user approve organizations' "
                          "email-domain claims (or, with --revoke, no longer)")
    instance_admin.add_argument("email")
    instance_admin.add_argument("--revoke", action="store_true")
    instance_admin.set_defaults(func=_run(lambda a, s: admin.users_set_instance_admin(
        s, email=a.email, enabled=not a.revoke)))

    claimed = sub.add_parser("domains", help="organizations' email-domain claims for SSO"
                             ).add_subparsers(dest="domains_command", required=True,
                                              metavar="COMMAND")
    list_claims = leaf(claimed, "list", "list domain claims")
    list_claims.add_argument("--pending", action="store_true", help="only unapproved claims")
    list_claims.set_defaults(func=_run(lambda a, s: admin.domains_list(
        s, pending_only=a.pending)))
    approve = leaf(claimed, "approve", "approve a domain claim (after checking the "
                   "organization owns the domain): its IdPs become trusted for it, in that org")
    approve.add_argument("claim_id", help="the claim's id (from `apiary domains list`)")
    approve.set_defaults(func=_run(lambda a, s: admin.domains_approve(s, claim_id=a.claim_id)))

    projects = sub.add_parser("projects", help="manage projects").add_subparsers(
        dest="projects_command", required=True, metavar="COMMAND")
    create_project = leaf(projects, "create", "create a project (and its organization and "
                          "workspace if they do not exist)")
    create_project.add_argument("--name", required=True, help="project name")
    create_project.add_argument("--workspace-id", help="put it in this workspace")
    create_project.add_argument("--org", help="organization id or name (created if missing)")
    create_project.add_argument("--workspace", default="default",
                                help="workspace name within --org (default 'default')")
    create_project.add_argument("--owner-email",
                                help="owner of the organization if it is created")
    create_project.set_defaults(func=_run(lambda a, s: admin.projects_create(
        s, name=a.name, workspace_id=a.workspace_id, org=a.org, workspace=a.workspace,
        owner_email=a.owner_email)))

    keys = sub.add_parser("keys", help="manage API keys and token signing keys").add_subparsers(
        dest="keys_command", required=True, metavar="COMMAND")
    create_key = leaf(keys, "create", "mint an API key (printed once)")
    scope = create_key.add_mutually_exclusive_group(required=True)
    scope.add_argument("--project-id", help="a project (ingestion) key")
    scope.add_argument("--workspace-id", help="a workspace key")
    create_key.add_argument("--name", default="cli", help="a label for the key")
    create_key.add_argument("--permission", action="append", dest="permissions",
                            help="a permission (repeatable; default events:write and "
                            "events:read)")
    create_key.set_defaults(func=_run(lambda a, s: admin.keys_create(
        s, name=a.name, project_id=a.project_id, workspace_id=a.workspace_id,
        permissions=a.permissions)))
    revoke_key = leaf(keys, "revoke", "revoke an API key")
    revoke_key.add_argument("key_id", help="the key's id (or the whole key)")
    revoke_key.set_defaults(func=_run(lambda a, s: admin.keys_revoke(s, key_id=a.key_id)))
    list_keys = leaf(keys, "list", "list API keys (never their secrets)")
    list_keys.add_argument("--project-id")
    list_keys.add_argument("--workspace-id")
    list_keys.set_defaults(func=_run(lambda a, s: admin.keys_list(
        s, project_id=a.project_id, workspace_id=a.workspace_id)))
    rotate = leaf(keys, "rotate-signing", "start a rotation of the token signing key "
                  "(published now, signing after the JWKS cache lifetime)")
    rotate.set_defaults(func=_run(lambda a, s: admin.keys_rotate_signing(s)))

    planes = sub.add_parser("data-planes", help="create federated data planes, register "
                            "legacy ones (token audiences)"
                            ).add_subparsers(dest="dp_command", required=True, metavar="COMMAND")
    register = leaf(planes, "register", "register a data plane")
    register.add_argument("--id", required=True, dest="dp_id",
                          help="its APIARY_DATA_PLANE_ID (the tokens' aud)")
    register.add_argument("--name", required=True)
    register.add_argument("--url", required=True)
    register.add_argument("--org-id", help="dedicate it to one organization")
    register.set_defaults(func=_run(lambda a, s: admin.data_planes_register(
        s, dp_id=a.dp_id, name=a.name, url=a.url, org_id=a.org_id)))
    create = leaf(planes, "create", "create a federated data plane and print its one-time "
                  "bootstrap token (give it to the data plane as APIARY_BOOTSTRAP_TOKEN)")
    create.add_argument("name")
    create.add_argument("--url", required=True, help="the data plane's public URL")
    create.add_argument("--org", dest="org_id", help="dedicate it to one organization (id or "
                        "name)")
    create.add_argument("--ttl-s", dest="ttl_s", type=int, default=3600,
                        help="how long the bootstrap token stays usable (60 s to 7 days)")
    create.set_defaults(func=_run(lambda a, s: admin.data_planes_create(
        s, name=a.name, url=a.url, org_id=a.org_id, ttl_s=a.ttl_s)))
    default = leaf(planes, "default", "make a federated data plane the one new projects are "
                   "assigned to (any other is unmarked)")
    default.add_argument("dp_id", metavar="ID")
    default.add_argument("--off", action="store_true",
                         help="unmark it: new projects are assigned to no data plane")
    default.set_defaults(func=_run(lambda a, s: admin.data_planes_default(
        s, dp_id=a.dp_id, enabled=not a.off)))
    list_planes = leaf(planes, "list", "list registered data planes")
    list_planes.set_defaults(func=_run(lambda a, s: admin.data_planes_list(s)))
