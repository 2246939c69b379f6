"""``apiary dlq list|show|replay|purge``: the dead letters, for the operator.

Runs where the dead letters are: on the host with the data directory (the embedded object
store, ``<data-dir>/objects``) or anywhere with ``APIARY_OBJECT_STORE_URL`` and the object
store's credentials. Replaying needs NATS too: ``APIARY_NATS_URL``, or the embedded
nats-server of the ``apiary up`` running on the data directory. What replay and purge
guarantee is :mod:`apiary.queue.dead_letters`; the same operations are served to the holder
of the admin token at ``/v1/admin/dead-letters``.

``purge`` asks for confirmation (type ``yes``) unless given ``--yes``; with no terminal to
ask on, it refuses. ``replay`` and ``purge`` act on the ids given, or on what the filters
(``--stream``, ``--reason``, ``--stage``, ``--project``) match, or with ``--all`` on
everything. Exit codes: 0 done, 1 some dead letters could not be replayed (they are kept),
2 usage (nothing selected, purge not confirmed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apiary.errors import ConfigurationError, QueueError
from apiary.objects import object_store
from apiary.queue import NatsServer, connect
from apiary.queue.dead_letters import DeadLetter, DeadLetters, Selection, counts
from apiary.settings import ApiarySettings, load_settings

Common = Callable[[argparse.ArgumentParser], None]


def _settings(args: argparse.Namespace) -> ApiarySettings:
    overrides: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    return load_settings(**overrides)


def _selection(args: argparse.Namespace) -> Selection:
    selection = Selection(ids=tuple(args.ids), stream=args.stream, reason=args.reason,
                          stage=args.stage, project_id=args.project, everything=args.all)
    if selection.empty:
        raise ConfigurationError("name dead letters by id, or select them with --stream, "
                                 "--reason, --stage or --project, or pass --all")
    return selection


async def _with_dead_letters(settings: ApiarySettings, *, nats: bool,
                             work: Callable[[DeadLetters], Awaitable[int]]) -> int:
    objects = object_store(settings)
    if not nats:
        return await work(DeadLetters(objects))
    url = settings.nats_url or NatsServer.running_url(settings.data_dir)
    if url is None:
        raise QueueError(f"replaying needs NATS: Apiary is not running on {settings.data_dir} "
                         "and APIARY_NATS_URL is unset")
    nc = await connect(url, name="apiary-dlq")
    try:
        return await work(DeadLetters(objects, nc.jetstream(),
                                      publish_timeout_s=settings.ingest_publish_timeout_s))
    finally:
        await nc.close()


def _when(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _print_list(letters: list[DeadLetter], limit: int) -> None:
    summary = counts(letters)
    print(f"{summary['total']} dead letter{'s' if summary['total'] != 1 else ''}")
    if summary["total"]:
        print(f"\n  {'reason':<28} {'stage':<12} {'count':>7}")
        for row in summary["by_reason_and_stage"]:
            print(f"  {row['reason']:<28} {row['stage']:<12} {row['count']:>7}")
        print(f"\n  {'id':<36} {'when':<21} {'project':<20} {'reason':<20} {'stage':<12} "
              f"{'rows':>5} error")
        for d in letters[:limit]:
            error = d.error if len(d.error) <= 80 else d.error[:77] + "..."
            rows = "-" if d.rows is None else str(d.rows)
            print(f"  {d.id:<36} {_when(d.dead_lettered_at):<21} {d.project_id or '-':<20} "
                  f"{d.reason:<20} {d.stage:<12} {rows:>5} {error}")
        if len(letters) > limit:
            print(f"  ... and {len(letters) - limit} more (--limit)")


def cmd_list(args: argparse.Namespace) -> int:
    async def work(dead: DeadLetters) -> int:
        letters = await dead.select(Selection(stream=args.stream, reason=args.reason,
                                              stage=args.stage, project_id=args.project,
                                              everything=True))
        if args.json:
            print(json.dumps({"counts": counts(letters),
                              "dead_letters": [d.summary() for d in letters[:args.limit]]},
                             indent=2))
        else:
            _print_list(letters, args.limit)
        return 0
    return asyncio.run(_with_dead_letters(_settings(args), nats=False, work=work))


def cmd_show(args: argparse.Namespace) -> int:
    async def work(dead: DeadLetters) -> int:
        detail = (await dead.get(args.id)).detail()
        if args.json:
            print(json.dumps(detail, indent=2, default=str))
            return 0
        payload = detail.pop("payload")
        for key, value in detail.items():
            if key == "dead_lettered_at":
                value = _when(value)
            print(f"{key}: {json.dumps(value) if isinstance(value, dict) else value}")
        print("payload:")
        print(json.dumps(payload, indent=2, default=str))
        return 0
    return asyncio.run(_with_dead_letters(_settings(args), nats=False, work=work))


def cmd_replay(args: argparse.Namespace) -> int:
    selection = _selection(args)

    async def work(dead: DeadLetters) -> int:
        report = await dead.replay_all(await dead.select(selection))
        if args.json:
            print(json.dumps(report.as_dict(), indent=2))
        else:
            print(f"replayed: {len(report.replayed)}")
            if report.already_replayed:
                print(f"already back in the stream (record removed): "
                      f"{len(report.already_replayed)}")
            for item in report.deferred:
                print(f"kept {item['id']}: {item['error']}")
            for item in report.failed:
                print(f"kept {item['id']}: {item['error']}")
        return 1 if report.deferred or report.failed else 0
    return asyncio.run(_with_dead_letters(_settings(args), nats=True, work=work))


def _confirmed(count: int) -> bool:
    if not sys.stdin.isatty():
        print("apiary: purge removes dead letters for good; pass --yes to confirm "
              "(no terminal to ask on)", file=sys.stderr)
        return False
    answer = input(f"Remove {count} dead letter{'s' if count != 1 else ''} for good? "
                   "Type 'yes': ")
    return answer.strip().lower() == "yes"


def cmd_purge(args: argparse.Namespace) -> int:
    selection = _selection(args)

    async def work(dead: DeadLetters) -> int:
        letters = await dead.select(selection)
        if not letters:
            print("no dead letter matches")
            return 0
        if not args.yes and not _confirmed(len(letters)):
            print("nothing removed")
            return 2
        for letter in letters:
            await dead.purge(letter)
        if args.json:
            print(json.dumps({"purged": [d.id for d in letters]}, indent=2))
        else:
            print(f"removed {len(letters)} dead letter{'s' if len(letters) != 1 else ''}")
        return 0
    return asyncio.run(_with_dead_letters(_settings(args), nats=False, work=work))


def add_dlq_commands(sub: Any, common: Common) -> None:
    """Add ``apiary dlq ...`` to the subcommands ``sub`` of the ``apiary`` parser."""
    dlq = sub.add_parser("dlq", help="list, show, replay or purge dead letters",
                         description="The dead letters, from the object store of this "
                         "data directory (or APIARY_OBJECT_STORE_URL). Replaying needs NATS: "
                         "APIARY_NATS_URL, or Apiary running on the data directory.")
    commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    def filters(p: argparse.ArgumentParser) -> None:
        common(p)
        p.add_argument("--stream", help="only this stream's (events, evaluation)")
        p.add_argument("--reason", help="only those with this reason (e.g. PoisonMessage)")
        p.add_argument("--stage", help="only those of this stage (decode, updates, enrich, "
                       "relink, backfill, dedup_check, insert, crash_loop, evaluator, ...)")
        p.add_argument("--project", help="only this project's")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    listing = commands.add_parser("list", help="counts by reason and stage, and the list")
    filters(listing)
    listing.add_argument("--limit", type=int, default=50, help="most listed (default 50)")
    listing.set_defaults(func=cmd_list)

    show = commands.add_parser("show", help="one dead letter: its error, headers and payload")
    common(show)
    show.add_argument("id", help="the dead letter's id (from `apiary dlq list`)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_show)

    for name, func, text in (
        ("replay", cmd_replay, "put dead letters back into their streams under their "
         "original message ids (replaying twice stores once)"),
        ("purge", cmd_purge, "remove dead letters for good (asks first)"),
    ):
        action = commands.add_parser(name, help=text)
        filters(action)
        action.add_argument("ids", nargs="*", help="dead letter ids")
        action.add_argument("--all", action="store_true", help="every dead letter")
        if name == "purge":
            action.add_argument("--yes", action="store_true", help="do not ask")
        action.set_defaults(func=func)


__all__ = ["add_dlq_commands"]
