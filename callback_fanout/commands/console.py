"""`console`: the operator console, a web page over what the other commands do
(``callback_fanout.console``)."""

from __future__ import annotations

import argparse
import asyncio

from callback_fanout.commands import Subcommands
from callback_fanout.flags import add_settings_flags, with_settings
from shared.settings import Settings

__all__ = ["add"]

_TEXT = """\
Serve the operator console on --console-host:--console-port (default 127.0.0.1:8088): the
status and the consumers at a glance, refreshed every few seconds, rates over the last 15
minutes, pause and resume a consumer, the parked messages with their replay and purge, a
job's trace, and the replay of archived history. It calls the same functions as the
commands `status`, `consumers`, `parked`, `trace` and `replay`.

Log in with a console token (--console-token NAME=SECRET; the name is logged with every
action). Without one, the console is open to the browsers of this machine and refuses to
listen on any address but loopback. Rates, handler p99 and lag need the roles' admin URLs
(--console-role-urls) or the RabbitMQ management API."""


def add(sub: Subcommands) -> None:
    cmd = sub.add_parser(
        "console",
        help="the operator console: a web page to see, search and steer the system",
        description=_TEXT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_flags(cmd, "console")
    cmd.set_defaults(handler=with_settings(_console))


def _console(_args: argparse.Namespace, settings: Settings) -> int:
    from callback_fanout.console.service import ConsoleService
    from shared.service import run_until_stopped

    service = ConsoleService(settings)
    return asyncio.run(run_until_stopped([service], asyncio.Event()))
