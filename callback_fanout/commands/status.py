"""`status`: every queue under the prefix at a glance, and an exit status a check can use."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TextIO

from callback_fanout.commands import Subcommands
from callback_fanout.flags import add_settings_flags, with_settings
from shared.settings import Settings

__all__ = ["add", "run_status"]

_TEXT = """\
One row per queue under the prefix: raw; each consumer queue with its delay queues
(retrying) and its dead queue (parked) folded in; unparsed; unrouted. Columns: ready and
unacknowledged messages, consumers attached, retrying, parked, in/out rates, and the
change of the ready count per second over --window seconds.

Exit status: 0 healthy; 1 when something is parked, a queue is missing, the raw queue
has no router or a consumer queue no consumer (a paused consumer's queue is shown
`paused`, not a problem), a --url role is not ready, or the broker cannot be reached; 2
for invalid settings.

Consumer queues come from the consumers the workers load (--consumer,
CALLBACK_FANOUT_CONSUMERS, the --config file, the entry points): AMQP cannot list
queues. When the RabbitMQ management API answers (--management-url; auto: the broker's
host, port 15672), every consumer queue under the prefix is shown, with unacknowledged
counts and in/out rates (published and acknowledged per second, as the management plugin
measures them). Without it, `unacked`, `in/s` and `out/s` show "-": an AMQP queue
declaration reports only ready messages and consumers.

A table at a terminal; one JSON document per line when piped or with --json."""


def add(sub: Subcommands) -> None:
    status = sub.add_parser(
        "status",
        help="every queue under the prefix at a glance; exit 1 when something needs a look",
        description=_TEXT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("--json", action="store_true", help="JSON even at a terminal")
    status.add_argument(
        "--watch",
        nargs="?",
        type=_positive_seconds,
        const=5.0,
        default=None,
        metavar="SECONDS",
        help="refresh every SECONDS (default 5) until interrupted",
    )
    status.add_argument(
        "--window",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="seconds between the two readings rates come from (0: no rates; default 1)",
    )
    status.add_argument(
        "--url",
        action="append",
        default=[],
        metavar="URL",
        help="a role's admin port (http://host:port) whose /readyz to include (repeatable)",
    )
    add_settings_flags(status, "status")
    status.set_defaults(handler=with_settings(_status))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be 0 or more: {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("seconds must be more than 0")
    return value


def _status(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(run_status(args, settings))


async def run_status(
    args: argparse.Namespace, settings: Settings, out: TextIO | None = None
) -> int:
    """Print the status (once, or every --watch seconds) to ``out``; the exit status."""
    from callback_fanout.readiness import readyz_url
    from callback_fanout.sources import consumer_refs
    from callback_fanout.status import read_status
    from callback_fanout.tables import console_for, status_view, wants_json
    from shared.amqp import connect_once

    out = out or sys.stdout
    urls = [readyz_url(url) for url in args.url]
    refs = consumer_refs(settings)  # as the workers find them
    as_json = wants_json(args.json, out)
    console = console_for(out)
    connection = await connect_once(settings, role="status")
    last = 1
    try:
        while True:
            status = await read_status(connection, settings, refs, urls=urls, window=args.window)
            last = status.exit_status
            if as_json:
                print(json.dumps(status.as_dict(), ensure_ascii=False), file=out, flush=True)
            else:
                if args.watch is not None:
                    console.clear()
                console.print(status_view(status))
            if args.watch is None:
                return last
            await asyncio.sleep(max(0.0, args.watch - args.window))
    except asyncio.CancelledError:  # Ctrl-C during --watch: the last verdict
        return last
    finally:
        await connection.close()
