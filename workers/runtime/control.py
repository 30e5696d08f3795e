"""A worker's side of the control state (:mod:`shared.control`).

At start, before any consumer consumes, the worker reads the control stream up to now (a
consumer paused then is never consumed here), and keeps reading it: a pause or resume
reaches every replica as it is appended. It also answers ``consumers list``'s questions
with what it holds of each consumer it runs.

The stream is followed on a connection of its own. A connection restores its channels one
after the other when it moves to another node, and a stream whose leader was on the lost node
can take half a minute to be consumed again: on the consumers' connection, that held every
consumer's channel back with it (a worker took 36 s to move instead of one).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from shared.amqp import within
from shared.control import ControlLog, PauseRecord, answer_body, ask_exchange
from shared.logs import get_logger
from workers.runtime.holding import Hold

__all__ = ["WorkerControl", "worker_id"]

log = get_logger("worker")


def worker_id() -> str:
    """``host:pid``: which worker an answer comes from."""
    return f"{socket.gethostname()}:{os.getpid()}"


class WorkerControl:
    """The control stream and the questions, for the holds of one worker's consumers."""

    def __init__(self, prefix: str, holds: Mapping[str, Hold]) -> None:
        self.prefix = prefix
        self.holds = holds
        self._log: ControlLog | None = None
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._asked: AbstractChannel | None = None

    async def start(self, connection: AbstractRobustConnection) -> None:
        """Read the control stream up to now (the holds are set), then answer questions;
        ``connection`` is the control's own (:meth:`stop` closes it)."""
        self._connection = connection
        self._channel = await connection.channel()
        self._log = ControlLog(self._channel, self.prefix)
        await self._log.follow(self._apply_record)
        self._asked = await connection.channel()
        exchange = await self._asked.declare_exchange(
            ask_exchange(self.prefix), aio_pika.ExchangeType.FANOUT, durable=True
        )
        queue = await self._asked.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange)
        await queue.consume(self._answer, no_ack=True)

    def _apply_record(self, record: PauseRecord) -> None:
        hold = self.holds.get(record.consumer)
        if hold is not None:
            hold.pause(record)

    async def _answer(self, message: AbstractIncomingMessage) -> None:
        if not message.reply_to or self._asked is None:
            return
        body = answer_body(
            {
                "worker": worker_id(),
                "consumers": {name: hold.describe() for name, hold in self.holds.items()},
            }
        )
        with contextlib.suppress(Exception):
            await self._asked.default_exchange.publish(
                aio_pika.Message(body, correlation_id=message.correlation_id),
                routing_key=message.reply_to,
            )

    async def stop(self) -> None:
        if self._log is not None:
            await self._log.stop()
        for channel in (self._asked, self._channel):
            if channel is not None and not channel.is_closed:
                await within(5.0, channel.close(), "close a control channel")
        if self._connection is not None and not self._connection.is_closed:
            await within(5.0, self._connection.close(), "close the control connection")
