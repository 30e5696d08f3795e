"""Names and declarations of every exchange and queue, under one prefix.

Every role declares what it uses at start-up; declarations are idempotent. All queues are
durable quorum queues. Dead-lettering between them uses the at-least-once strategy, so a
message moved by the broker itself (delay expiry, delivery limit) is never lost on the way.

```
<prefix>.raw                      bodies from the ingress (default exchange, routing key = name)
<prefix>.unparsed                 bodies that did not parse, with the reason in a header
<prefix>.events                   topic exchange, routing key <EventName>.<Tag>.<State>
<prefix>.unrouted (exchange+queue) alternate exchange of <prefix>.events: events nobody bound
<prefix>.consumer.<name>          one queue per consumer, bound with its routes
<prefix>.consumer.<name>.delay.<ms>ms  one per backoff step; expires back into the consumer queue
<prefix>.consumer.<name>.dead     what a consumer could not handle, with the last error
```
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from aio_pika.exceptions import ChannelPreconditionFailed

from shared.logs import get_logger

__all__ = [
    "DELIVERY_LIMIT",
    "GROUP_SIZE",
    "STREAM_ARGUMENTS",
    "STREAM_FROM_FIRST",
    "ConsumerQueues",
    "Topology",
    "quorum_arguments",
]

#: Deliveries of one message without an ack before the broker parks it by itself. It stops a
#: body that crashes its process from looping forever; connection cuts, kills and shutdown
#: hand-backs count too, so it is well above what a rolling restart or an outage costs.
DELIVERY_LIMIT = 20

#: Arguments of a stream (the control stream, ``shared.control``), and of a consumer that
#: reads one from its first record.
STREAM_ARGUMENTS: dict[str, Any] = {"x-queue-type": "stream"}
STREAM_FROM_FIRST: dict[str, Any] = {"x-stream-offset": "first"}

#: The queue argument that places a new quorum queue's members on that many nodes.
GROUP_SIZE = "x-quorum-initial-group-size"

log = get_logger("topology")

_DELAY_RE = re.compile(r"\.delay\.(\d+)ms$")
_ROUTE_WORD = re.compile(r"^(\*|#|[A-Za-z0-9_\-]+)$")


def quorum_arguments(
    *,
    dead_letter_to: str | None = None,
    ttl_ms: int | None = None,
    delivery_limit: bool = True,
    group_size: int = 3,
) -> dict[str, Any]:
    """Arguments of a durable quorum queue, optionally dead-lettering to another queue."""
    args: dict[str, Any] = {"x-queue-type": "quorum", GROUP_SIZE: group_size}
    if delivery_limit:
        args["x-delivery-limit"] = DELIVERY_LIMIT
    if dead_letter_to is not None:
        args.update(
            {
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": dead_letter_to,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        )
    if ttl_ms is not None:
        args["x-message-ttl"] = ttl_ms
    return args


def valid_route(pattern: str) -> bool:
    """True when ``pattern`` is an AMQP topic binding key (words, ``*`` and ``#``)."""
    return bool(pattern) and all(_ROUTE_WORD.match(word) for word in pattern.split("."))


@dataclass(frozen=True)
class ConsumerQueues:
    """The queue names of one consumer."""

    main: str
    dead: str
    delays: tuple[tuple[float, str], ...]  # (seconds, queue name), in backoff order

    def delay_queue(self, seconds: float) -> str:
        """The delay queue that holds a message for ``seconds``."""
        return dict(self.delays)[seconds]


@dataclass(frozen=True)
class Topology:
    """Every name under one prefix, and the declarations that create them."""

    prefix: str
    #: Members a quorum queue gets when it is created (RabbitMQ caps it at the cluster size).
    group_size: int = 3

    @property
    def raw(self) -> str:
        return f"{self.prefix}.raw"

    @property
    def unparsed(self) -> str:
        return f"{self.prefix}.unparsed"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def unrouted(self) -> str:
        return f"{self.prefix}.unrouted"

    def consumer(self, name: str, delays: Sequence[float]) -> ConsumerQueues:
        main = f"{self.prefix}.consumer.{name}"
        steps = tuple((d, f"{main}.delay.{round(d * 1000)}ms") for d in dict.fromkeys(delays))
        return ConsumerQueues(main=main, dead=f"{main}.dead", delays=steps)

    def parking_queues(self, consumer_names: Iterable[str] = ()) -> list[str]:
        """The queues an operator inspects and replays from."""
        dead = (f"{self.prefix}.consumer.{n}.dead" for n in consumer_names)
        return [self.unparsed, self.unrouted, *dead]

    def arguments_of(self, queue: str) -> dict[str, Any]:
        """The arguments every declaration of ``queue`` uses (one source of truth).

        Declaring a queue again with the same arguments is how its exact message count is
        read: quorum queues answer a passive declare from lagging metrics.
        """
        size = self.group_size
        parking = quorum_arguments(delivery_limit=False, group_size=size)
        if queue == self.raw:
            return quorum_arguments(dead_letter_to=self.unparsed, group_size=size)
        if queue in (self.unparsed, self.unrouted) or queue.endswith(".dead"):
            return parking
        consumer_prefix = f"{self.prefix}.consumer."
        if not queue.startswith(consumer_prefix):
            raise ValueError(f"{queue!r} is not a queue of prefix {self.prefix!r}")
        delay = _DELAY_RE.search(queue)
        if delay:
            main = queue[: delay.start()]
            return quorum_arguments(
                dead_letter_to=main,
                ttl_ms=int(delay.group(1)),
                delivery_limit=False,
                group_size=size,
            )
        return quorum_arguments(dead_letter_to=f"{queue}.dead", group_size=size)

    async def declare_queue(self, channel: AbstractChannel, queue: str) -> AbstractQueue:
        """Declare one of this topology's queues (idempotent).

        The group size only matters when a queue is created, but RabbitMQ (3.10 at least)
        compares it with an existing queue's all the same. A queue created before the argument
        was sent has none: it is declared again without it, and keeps its members.
        """
        arguments = self.arguments_of(queue)
        try:
            return await channel.declare_queue(queue, durable=True, arguments=arguments)
        except ChannelPreconditionFailed as exc:
            if GROUP_SIZE not in str(exc) or "current is none" not in str(exc):
                raise
        log.debug("queue predates the group size argument, declared without it", queue=queue)
        await channel.reopen()
        del arguments[GROUP_SIZE]
        return await channel.declare_queue(queue, durable=True, arguments=arguments)

    async def message_count(self, channel: AbstractChannel, queue: str) -> int:
        """The exact number of ready messages in ``queue``."""
        declared = await self.declare_queue(channel, queue)
        return declared.declaration_result.message_count or 0

    # -- declarations -------------------------------------------------------------------

    async def declare_ingress(self, channel: AbstractChannel) -> AbstractQueue:
        """What the ingress and the router share: the raw queue and where its poison goes."""
        await self.declare_queue(channel, self.unparsed)
        return await self.declare_queue(channel, self.raw)

    async def declare_events(self, channel: AbstractChannel) -> AbstractExchange:
        """The events exchange with its alternate exchange and the unrouted queue."""
        unrouted_x = await channel.declare_exchange(
            self.unrouted, aio_pika.ExchangeType.FANOUT, durable=True
        )
        unrouted_q = await self.declare_queue(channel, self.unrouted)
        await unrouted_q.bind(unrouted_x)
        return await channel.declare_exchange(
            self.events,
            aio_pika.ExchangeType.TOPIC,
            durable=True,
            arguments={"alternate-exchange": self.unrouted},
        )

    async def declare_router(
        self, channel: AbstractChannel
    ) -> tuple[AbstractQueue, AbstractExchange]:
        raw = await self.declare_ingress(channel)
        return raw, await self.declare_events(channel)

    async def declare_consumer(
        self, channel: AbstractChannel, queues: ConsumerQueues, routes: Sequence[str]
    ) -> AbstractQueue:
        """A consumer's queue bound with its routes, its delay queues and its dead queue."""
        events = await self.declare_events(channel)
        await self.declare_queue(channel, queues.dead)
        main = await self.declare_queue(channel, queues.main)
        for _seconds, name in queues.delays:
            await self.declare_queue(channel, name)
        for route in routes:
            await main.bind(events, routing_key=route)
        return main

    async def declare_all(
        self,
        channel: AbstractChannel,
        consumers: Sequence[tuple[ConsumerQueues, Sequence[str]]],
    ) -> list[str]:
        """Everything a deployment of ``consumers`` uses: the raw queue, the events exchange
        and its unrouted queue, and each consumer's queues bound with its routes (``declare``,
        before routers start). The names of the queues, in the order they were declared."""
        await self.declare_router(channel)
        declared = [self.unparsed, self.raw, self.unrouted]
        for queues, routes in consumers:
            await self.declare_consumer(channel, queues, routes)
            declared += [queues.dead, queues.main, *(name for _, name in queues.delays)]
        return declared
