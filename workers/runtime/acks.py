"""Acks of one consumer channel, sent in groups: one frame for many handled deliveries.

A handled delivery's ack waits for the end of the current turn of the event loop; then
every handled delivery below the lowest one still in hand is acked by a single
``basic.ack`` with ``multiple=True``, and the others (above a delivery still being handled)
one by one. An ack never covers a delivery that is still being handled, or one that was
rejected or handed back (those are settled at once, outside this group).

Delivery tags count per channel: when the channel under a robust connection is opened
again, what was in hand on the old one is forgotten (the broker redelivers it).
"""

from __future__ import annotations

import asyncio
import contextlib

from aio_pika.abc import AbstractIncomingMessage

from shared.logs import get_logger

__all__ = ["AckGroup"]

log = get_logger("worker")


class AckGroup:
    """The deliveries of one consumer in hand, and the acks to send for them."""

    def __init__(self) -> None:
        self._channel: object = None
        self._open: set[int] = set()  # delivered and not yet acked or handed back
        self._handled: dict[int, AbstractIncomingMessage] = {}  # to ack at the next flush
        self._flushing: asyncio.Task[None] | None = None

    def received(self, message: AbstractIncomingMessage) -> None:
        """A delivery is now in hand."""
        if message.channel is not self._channel:  # a new channel: new delivery tags
            self._channel = message.channel
            self._open.clear()
            self._handled.clear()
        if message.delivery_tag is not None:
            self._open.add(message.delivery_tag)

    def settled(self, message: AbstractIncomingMessage) -> None:
        """A delivery was handed back or rejected outside the group."""
        if message.channel is self._channel and message.delivery_tag is not None:
            self._open.discard(message.delivery_tag)

    def ack(self, message: AbstractIncomingMessage) -> None:
        """Ack ``message`` with the others handled in this turn of the loop."""
        tag = message.delivery_tag
        if message.channel is not self._channel or tag is None or tag not in self._open:
            return  # from a channel gone since: the broker redelivers it
        self._handled[tag] = message
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def drain(self) -> None:
        """Send the acks still waiting (before the channel closes)."""
        while self._flushing is not None and not self._flushing.done():
            with contextlib.suppress(Exception):
                await self._flushing

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let the handlers finishing in this turn join the group
        # Deliveries handled while a group's acks are being sent join the next group: this
        # task is the only one sending, so it goes on until nothing is left waiting.
        while self._handled:
            handled, self._handled = self._handled, {}
            await self._send(handled)

    async def _send(self, handled: dict[int, AbstractIncomingMessage]) -> None:
        channel = next(iter(handled.values())).channel
        self._open.difference_update(handled)
        lowest_open = min(self._open, default=None)
        below = [t for t in handled if lowest_open is None or t < lowest_open]
        try:
            if below:
                await channel.basic_ack(max(below), multiple=len(below) > 1)
            for tag in handled:
                if lowest_open is not None and tag > lowest_open:
                    await channel.basic_ack(tag)
        except Exception as exc:  # the channel closed: the broker redelivers what was not acked
            log.warning("acks not sent, the broker will redeliver", error=repr(exc))
