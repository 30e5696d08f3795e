"""`declare`: the whole topology of a set of consumers, before any role runs.

A deploy pipeline that starts routers before workers runs it first: every event a router
publishes then finds its consumer's queue bound, and none goes to ``<prefix>.unrouted``.
Declarations are idempotent: run again, it changes nothing and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aio_pika.exceptions import AMQPError

from callback_fanout.commands import Subcommands
from callback_fanout.flags import add_settings_flags, with_settings
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.topology import ConsumerQueues, Topology

__all__ = ["add", "run_declare"]

_TEXT = (
    "create every exchange and queue of the prefix and bind the consumers' queues "
    "(idempotent; run it before starting routers)"
)


def add(sub: Subcommands) -> None:
    parser = sub.add_parser("declare", help=_TEXT, description=_TEXT)
    add_settings_flags(parser, "declare")
    parser.set_defaults(handler=with_settings(run_declare))


def run_declare(args: argparse.Namespace, settings: Settings) -> int:
    """Declare the topology the workers of these settings use; print one line per queue."""
    from shared.topology import Topology
    from workers.loader import consumers_of
    from workers.runtime.retry import RetryPolicy

    topology = Topology(settings.prefix, settings.quorum_initial_group_size)
    consumers = [
        (
            topology.consumer(c.spec.name, RetryPolicy.for_consumer(c.spec, settings).delays),
            tuple(c.spec.routes),
        )
        for c in consumers_of(settings, os.environ)  # as the workers find them
    ]
    try:
        declared = asyncio.run(_declare(settings, topology, consumers))
    except AMQPError as exc:  # e.g. a queue that exists with other arguments
        print(f"callback-fanout: declare failed: {exc!r}", file=sys.stderr)
        return 1
    routes = {queues.main: bound for queues, bound in consumers}
    for queue in declared:
        bound = routes.get(queue)
        print(f"{queue}  <- {', '.join(bound)}" if bound else queue, file=sys.stdout)
    return 0


async def _declare(
    settings: Settings,
    topology: Topology,
    consumers: Sequence[tuple[ConsumerQueues, Sequence[str]]],
) -> list[str]:
    """Declare on one plain connection; :class:`BrokerUnavailable` (exit 1) if none answers."""
    from shared.amqp import connect_once

    connection = await connect_once(settings, role="declare")
    try:
        channel = await connection.channel()
        return await topology.declare_all(channel, consumers)
    finally:
        await connection.close()
