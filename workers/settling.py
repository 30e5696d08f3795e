"""Settling a delivery, for the router and the consumer workers alike.

:func:`wait_all` waits for the publishes a delivery needs (the router's confirms, the events
of one message in a worker) before it is acked. :func:`pause_before_requeue` is the pause
before a delivery that could not be settled is handed back to its queue. When a publish
fails (a nack, a channel gone), the router and the workers hand the delivery back to be
tried again. Handed back at once, it comes straight back and fails again: while a cluster
moves a queue's leader, RabbitMQ 3.10 nacks for about a second, and a raw batch went round
the 20 deliveries of its queue's limit (``x-delivery-limit``) in that second and was parked
in ``unparsed`` although nothing was wrong with it. A pause of a second between tries leaves
the failover 20 seconds before anything is parked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

__all__ = ["REQUEUE_PAUSE", "pause_before_requeue", "wait_all"]

#: Seconds a delivery is held before it is handed back after a failed publish.
REQUEUE_PAUSE = 1.0


async def wait_all(waiting: Sequence[Awaitable[None]]) -> None:
    """Wait for every one (none left running, none with an unretrieved error), then raise the
    first error; a single awaitable is awaited as it is, without a task."""
    if len(waiting) == 1:
        await waiting[0]
        return
    results = await asyncio.gather(*waiting, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def pause_before_requeue() -> None:
    """Wait :data:`REQUEUE_PAUSE` seconds (cancelled at shutdown: the broker redelivers)."""
    await asyncio.sleep(REQUEUE_PAUSE)
