"""The broker under test: which one, and a client to look at queues and clean up."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import aio_pika
import pytest
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractMessage,
    AbstractRobustConnection,
)

from shared.control import ask_exchange, control_stream
from shared.topology import Topology
from tests.support.broker_control import RabbitmqContainer

__all__ = ["BrokerClient", "BrokerUnderTest", "provide_broker"]

_HOW = (
    "No RabbitMQ for the broker tests. Set AMQP_URL (e.g. amqp://guest:guest@127.0.0.1:5672/) "
    "to use a running broker, or run Docker so testcontainers can start one."
)


@dataclass(frozen=True)
class BrokerUnderTest:
    """The broker the tests use: its URL and, when testcontainers started it, its container."""

    url: str
    container: RabbitmqContainer | None = None


@contextlib.contextmanager
def provide_broker() -> Iterator[BrokerUnderTest]:
    """``AMQP_URL`` when set; else a RabbitMQ started by testcontainers; else a clear failure."""
    url = os.environ.get("AMQP_URL")
    if url:
        yield BrokerUnderTest(url)
        return
    try:
        from testcontainers.rabbitmq import RabbitMqContainer

        container = RabbitMqContainer("rabbitmq:3.13-management")
        container.start()
    except Exception as exc:
        pytest.fail(f"{_HOW} ({type(exc).__name__}: {exc})", pytrace=False)
    try:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(container.port)
        url = f"amqp://{container.username}:{container.password}@{host}:{port}/"
        yield BrokerUnderTest(url, container)
    finally:
        container.stop()


@dataclass
class BrokerClient:
    """A test's own view of the broker: counts, messages, and cleanup of what it declared."""

    url: str
    topology: Topology
    connection: AbstractRobustConnection
    channel: AbstractChannel
    consumer_names: set[str] = field(default_factory=set)
    delays: set[float] = field(default_factory=set)

    async def count(self, queue: str) -> int:
        return await self.topology.message_count(self.channel, queue)

    async def count_is(self, queue: str, n: int) -> bool:
        """True when ``queue`` holds exactly ``n`` ready messages (for ``eventually``)."""
        return await self.count(queue) == n

    async def take_all(self, queue: str) -> list[AbstractIncomingMessage]:
        """Every message now in ``queue``, removed from it."""
        q = await self.channel.declare_queue(queue, passive=True)
        out = []
        while (message := await q.get(fail=False, no_ack=True)) is not None:
            out.append(message)
        return out

    async def peek(self, queue: str) -> AbstractIncomingMessage:
        """The first message of ``queue``, left in it (handed back unacked)."""
        channel = await self.connection.channel()
        try:
            q = await channel.declare_queue(queue, passive=True)
            message = await q.get(no_ack=False, fail=False)
            assert message is not None, f"{queue} is empty"
            await message.reject(requeue=True)
        finally:
            await channel.close()
        return message

    async def take_raw(self) -> list[AbstractMessage]:
        """Every body now on the raw queue as its lone message (batches unpacked), removed."""
        from workers.router.rawbodies import raw_messages

        return [lone for m in await self.take_all(self.topology.raw) for lone in raw_messages(m)]

    def track(self, consumer_names: Iterable[str], delays: Iterable[float]) -> None:
        self.consumer_names.update(consumer_names)
        self.delays.update(delays)

    async def cleanup(self) -> None:
        t = self.topology
        queues = [t.raw, t.unparsed, t.unrouted]
        for name in self.consumer_names:
            cq = t.consumer(name, sorted(self.delays) or [1.0])
            queues += [cq.main, cq.dead, *(q for _, q in cq.delays)]
        queues.append(control_stream(t.prefix))  # the workers' control state
        channel = await self.connection.channel()
        for queue in queues:
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(queue)
        for exchange in (t.events, t.unrouted, ask_exchange(t.prefix)):
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(exchange)
        await self.connection.close()
