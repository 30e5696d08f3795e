"""`parked list|show|replay|purge`: operating the parking queues (``callback_fanout.parking``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from callback_fanout.commands import Subcommands
from callback_fanout.flags import add_settings_flags, with_settings
from callback_fanout.pacing import rate_flag
from shared.settings import Settings

if TYPE_CHECKING:
    from callback_fanout.parking import ParkedMessage

__all__ = ["add", "run_parked"]

_TEXTS = {
    "list": "message counts of every parking queue (a table at a terminal; "
    "`COUNT  QUEUE` lines when piped; JSON lines with --json)",
    "show": "print parked messages without removing them (a table at a terminal; "
    "JSON lines when piped or with --json)",
    "replay": "send parked messages back (unparsed: to the router; unrouted: to the events "
    "exchange; dead: to the consumer's queue), attempts reset",
    "purge": "delete parked messages (asks for confirmation unless --yes)",
}


def add(sub: Subcommands) -> None:
    parked = sub.add_parser(
        "parked",
        help="operate the parking queues: list, show, replay, purge",
        description="QUEUE is `unparsed`, `unrouted`, a consumer name (its dead queue) "
        "or a full queue name.",
    )
    actions = parked.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in _TEXTS.items():
        cmd = actions.add_parser(action, help=text, description=text)
        if action != "list":
            cmd.add_argument("queue", metavar="QUEUE")
            cmd.add_argument("--routing-key", help="only messages whose routing key matches")
            cmd.add_argument("--job-id", help="only events of this job")
            cmd.add_argument("--reason", help="only messages whose reason contains this text")
        if action in ("list", "show"):
            cmd.add_argument("--json", action="store_true", help="JSON lines even at a terminal")
        if action == "show":
            cmd.add_argument("--limit", type=int, default=20, help="at most this many")
            cmd.add_argument("--body", action="store_true", help="include the bodies")
        if action == "replay":
            cmd.add_argument("--dry-run", action="store_true", help="count, change nothing")
            cmd.add_argument(
                "--rate",
                type=rate_flag,
                metavar="N",
                help="at most N messages a second (default: as fast as the broker confirms)",
            )
        if action == "purge":
            cmd.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        add_settings_flags(cmd, "parked")
    parked.set_defaults(handler=with_settings(_parked))


def _parked(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(run_parked(args, settings))


async def run_parked(
    args: argparse.Namespace, settings: Settings, out: TextIO | None = None
) -> int:
    """Carry out the action on the parking queues; the exit status."""
    from callback_fanout.parking import MessageFilter, Parking
    from callback_fanout.sources import consumer_names
    from shared.amqp import connect
    from shared.topology import Topology

    out = out or sys.stdout
    connection = await connect(settings, role="parked")
    try:
        parking = Parking(connection, Topology(settings.prefix, settings.quorum_initial_group_size))
        if args.action == "list":
            counts = await parking.counts(consumer_names(settings))
            _print_counts(counts, out, as_json=args.json)
            return 0
        queue = parking.resolve(args.queue)
        where = MessageFilter(args.routing_key, args.job_id, args.reason)
        if args.action == "show":
            shown = await parking.show(queue, where, args.limit)
            _print_parked(queue, shown, out, as_json=args.json, with_body=args.body)
            return 0
        if args.action == "replay":
            count = await parking.replay(queue, where, dry_run=args.dry_run, rate=args.rate)
            print(f"{'would replay' if args.dry_run else 'replayed'} {count} from {queue}")
            return 0
        if not args.yes and not _confirmed(queue):
            print("purge cancelled", file=sys.stderr)
            return 1
        print(f"purged {await parking.purge(queue, where)} from {queue}")
        return 0
    finally:
        await connection.close()


def _print_counts(counts: dict[str, int], out: TextIO, *, as_json: bool) -> None:
    from callback_fanout.tables import console_for, is_terminal, parked_counts_table

    if as_json:
        for queue, count in counts.items():
            print(json.dumps({"queue": queue, "parked": count}), file=out)
    elif is_terminal(out):
        console_for(out).print(parked_counts_table(counts))
    else:  # the format scripts have read since 0.1
        for queue, count in counts.items():
            print(f"{count:>10}  {queue}", file=out)


def _print_parked(
    queue: str, shown: Sequence[ParkedMessage], out: TextIO, *, as_json: bool, with_body: bool
) -> None:
    from callback_fanout.tables import console_for, parked_messages_table, wants_json

    if wants_json(as_json, out):
        for parked in shown:
            line = json.dumps(parked.as_dict(with_body=with_body), ensure_ascii=False)
            print(line, file=out)
        return
    console = console_for(out)
    console.print(parked_messages_table(queue, shown))
    if with_body:
        for parked in shown:
            console.rule(f"{parked.message.message_id or '(no message id)'}")
            console.print(parked.body_text(), markup=False)


def _confirmed(queue: str) -> bool:
    if not sys.stdin.isatty():
        print("refusing to purge without --yes (no terminal to ask)", file=sys.stderr)
        return False
    return input(f"type the queue name to purge it ({queue}): ").strip() == queue
