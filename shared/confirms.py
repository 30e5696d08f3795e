"""A publisher-confirmed channel that is replaced when the broker refuses (nacks) a publish.

Measured on RabbitMQ 3.10 with a three-node cluster: when the node leading a quorum queue is
killed, a publisher's channel reopened on another node right away (by the robust connection)
can keep its view of the dead leader and have every publish to that queue nacked, for as long
as the channel lives, while a new leader has long been elected and a fresh channel on the
same node publishes at once. So a nack counts as "this channel may be stale": the publish is
refused (the caller answers 503 or requeues) and a new channel takes over, at most once a
second. A legitimate refusal costs a channel reopen, nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import DeliveryError
from pamqp.commands import Basic

from shared.logs import get_logger

__all__ = ["RenewingChannel", "is_nack"]

log = get_logger("amqp")

T = TypeVar("T")

#: Fewest seconds between two renewals of one channel.
MIN_RENEW_INTERVAL = 1.0


def is_nack(exc: BaseException) -> bool:
    """True when ``exc`` is the broker refusing a publish (Basic.Nack)."""
    return isinstance(exc, DeliveryError) and isinstance(exc.frame, Basic.Nack)


class RenewingChannel(Generic[T]):
    """A confirmed channel plus what was declared on it, renewed after a nack.

    ``declare`` runs on every new channel and returns what the owner publishes through (an
    exchange, a queue, a tuple of them), available as :attr:`declared`.
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        declare: Callable[[AbstractChannel], Awaitable[T]],
        *,
        what: str,
    ) -> None:
        self._connection = connection
        self._declare = declare
        self._what = what
        self._channel: AbstractChannel | None = None
        self._declared: T | None = None
        self._renewing: asyncio.Task[None] | None = None
        self._last_renewal = 0.0
        self.renewals = 0

    async def open(self) -> None:
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        declared = await self._declare(channel)
        old, self._channel, self._declared = self._channel, channel, declared
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()

    @property
    def channel(self) -> AbstractChannel | None:
        return self._channel

    @property
    def declared(self) -> T:
        assert self._declared is not None, "not open"
        return self._declared

    def refused(self, exc: BaseException) -> None:
        """Called with every publish error; renews the channel after a nack."""
        if not is_nack(exc) or self._renewing is not None:
            return
        if time.monotonic() - self._last_renewal < MIN_RENEW_INTERVAL:
            return
        self._last_renewal = time.monotonic()
        self._renewing = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        try:
            await self.open()
            self.renewals += 1
            log.info("publish refused by the broker: channel renewed", channel=self._what)
        except Exception as exc:  # the connection is away: its own recovery takes over
            log.debug("channel renewal failed", channel=self._what, error=repr(exc))
        finally:
            self._renewing = None

    async def close(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(BaseException):
                await self._renewing
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()
