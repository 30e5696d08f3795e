"""Settling deliveries, for the router and the consumer workers alike.

:class:`InFlight` keeps the deliveries being worked on, so that a stop lets them finish
within a grace period and then cuts off the rest (unacked: the broker redelivers them).

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
import contextlib
from collections.abc import Awaitable, Iterator, Sequence

__all__ = ["REQUEUE_PAUSE", "InFlight", "pause_before_requeue", "wait_all"]

#: Seconds a delivery is held before it is handed back after a failed publish.
REQUEUE_PAUSE = 1.0


async def wait_all(waiting: Sequence[Awaitable[object]]) -> None:
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


class InFlight:
    """The tasks working on deliveries now."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        """Count the current task in while the block runs."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)

    async def finish(self, grace: float) -> int:
        """Wait up to ``grace`` seconds for every task, then cancel those still running (their
        deliveries stay unacked: the broker redelivers them); how many were cut off."""
        if not self._tasks:
            return 0
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        return len(pending)
