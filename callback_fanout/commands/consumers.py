"""`consumers list|pause|resume`: holding a destination (:mod:`callback_fanout.consumers`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from callback_fanout.commands import Subcommands
from callback_fanout.flags import add_settings_flags, with_settings
from callback_fanout.when import parse_duration
from shared.errors import ConfigError
from shared.settings import Settings

if TYPE_CHECKING:
    from callback_fanout.consumers import ConsumerView

__all__ = ["add", "duration", "run_consumers"]

_TEXTS = {
    "list": "every consumer: its state (running, paused, breaker open, half-open, no worker), "
    "the messages waiting in its queue, the consumers on it and the workers that run it, its "
    "rate limit (global: one budget in Redis for every replica; process: each its own) "
    "(a table at a terminal; JSON lines when piped or with --json)",
    "pause": "stop every worker replica taking the consumer's events (within 2 s); they wait "
    "in its queue, their attempts untouched; handlers already running finish",
    "resume": "let every worker replica take the consumer's events again",
}


def duration(text: str) -> float:
    """``--for``: ``90``, ``90s``, ``15m``, ``2h``, ``1d`` as seconds (more than 0)."""
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add(sub: Subcommands) -> None:
    consumers = sub.add_parser(
        "consumers",
        help="hold a destination: list the consumers, pause one (for a while), resume it",
        description="Pause and resume act on every worker replica at once; the state lives "
        "in RabbitMQ (the control stream under the prefix), so a worker that starts while a "
        "consumer is paused does not take its events, and `pause --for` ends by itself.",
    )
    actions = consumers.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in _TEXTS.items():
        cmd = actions.add_parser(action, help=text, description=text)
        if action == "list":
            cmd.add_argument("--json", action="store_true", help="JSON lines even at a terminal")
        else:
            cmd.add_argument("name", metavar="NAME", help="the consumer's name")
        if action == "pause":
            cmd.add_argument(
                "--for",
                dest="for_",
                type=duration,
                metavar="DURATION",
                help="resume by itself after this long (90s, 15m, 2h, 1d)",
            )
        add_settings_flags(cmd, "consumers")
    consumers.set_defaults(handler=with_settings(_consumers))


def _consumers(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(run_consumers(args, settings))


async def run_consumers(
    args: argparse.Namespace, settings: Settings, out: TextIO | None = None
) -> int:
    """Carry out the action; the exit status."""
    from callback_fanout.consumers import consumer_views, pause, resume
    from callback_fanout.sources import consumer_names
    from shared.amqp import connect_once
    from shared.topology import Topology

    out = out or sys.stdout
    topology = Topology(settings.prefix, settings.quorum_initial_group_size)
    connection = await connect_once(settings, role="consumers")
    try:
        if args.action == "list":
            views = await consumer_views(connection, topology, consumer_names(settings))
            _print_views(views, out, as_json=args.json)
            return 0
        if args.action == "pause":
            record = await pause(connection, topology, args.name, seconds=args.for_)
            until = "until resumed" if record.until is None else f"until {_when(record.until)}"
            print(f"paused {record.consumer} {until}", file=out)
            return 0
        record = await resume(connection, topology, args.name)
        print(f"resumed {record.consumer}", file=out)
        return 0
    finally:
        await connection.close()


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _print_views(views: Sequence[ConsumerView], out: TextIO, *, as_json: bool) -> None:
    from callback_fanout.tables import console_for, consumers_table, wants_json

    if wants_json(as_json, out):
        for view in views:
            print(json.dumps(view.as_dict(), ensure_ascii=False), file=out)
        return
    console_for(out).print(consumers_table(views))
