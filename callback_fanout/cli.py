"""The ``callback-fanout`` command: the parser, built from the commands' modules
(:mod:`callback_fanout.commands`), and :func:`main`."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from callback_fanout import __version__
from callback_fanout.commands import (
    console,
    consumers,
    declare,
    parked,
    parse,
    replay,
    roles,
    schema,
    status,
    trace,
)
from callback_fanout.commands.parked import run_parked as _parked
from callback_fanout.commands.status import run_status as _status
from callback_fanout.flags import settings_from as _settings_from

# `_parked`, `_status` and `_settings_from` keep the names tests and tools import them by.
__all__ = ["_parked", "_settings_from", "_status", "build_parser", "main"]

#: The command modules, in the order `callback-fanout --help` lists them.
COMMANDS = (roles, declare, status, consumers, parked, trace, replay, console, parse, schema)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callback-fanout",
        description="Receive Tencent CI / COS callbacks durably and fan them out to consumers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(sub)
    return parser


_build_parser = build_parser  # the name tests and tools import it by


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)
