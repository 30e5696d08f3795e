"""Making a raw body durable: a publisher-confirmed, persistent message on ``<prefix>.raw``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection, HeadersType

from shared.amqp import connect
from shared.errors import BrokerUnavailable
from shared.logs import get_logger
from shared.settings import Settings
from shared.topology import Topology

__all__ = ["AmqpPublisher", "Publisher", "RawMeta"]

log = get_logger("ingress.publisher")


@dataclass(frozen=True, slots=True)
class RawMeta:
    """What the ingress knows about one request; it travels as AMQP message properties."""

    request_id: str
    received_at: float  # seconds since the epoch
    content_type: str | None
    source_address: str | None
    headers: dict[str, str] = field(default_factory=dict)
    token_name: str | None = None

    def message(self, body: bytes) -> aio_pika.Message:
        http_headers: HeadersType = dict(self.headers)
        headers: HeadersType = {
            "x-received-at": self.received_at,
            "x-http-headers": http_headers,
        }
        if self.source_address:
            headers["x-source-address"] = self.source_address
        if self.token_name:
            headers["x-token-name"] = self.token_name
        return aio_pika.Message(
            body,
            message_id=self.request_id,
            content_type=self.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=headers,
        )


class Publisher(Protocol):
    """Makes one body durable or raises :class:`BrokerUnavailable`."""

    @property
    def ready(self) -> bool:
        """True when the broker is connected and the topology declared."""
        ...

    async def publish(self, body: bytes, meta: RawMeta) -> None:
        """Return only once the body is durable."""
        ...


class AmqpPublisher:
    """Publishes raw bodies with publisher confirms, sharing one channel.

    Concurrent requests share the channel, so RabbitMQ confirms many of them with one
    ``basic.ack(multiple=true)``: each request still waits for the confirm of its own body.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._topology = Topology(settings.prefix)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._declared = False

    @property
    def ready(self) -> bool:
        channel = self._channel
        return self._declared and channel is not None and not channel.is_closed

    async def start(self, stop: asyncio.Event | None = None) -> None:
        """Connect (retrying until the broker answers) and declare the raw queue."""
        self._connection = await connect(self._settings, role="ingress", stop=stop)
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        await self._topology.declare_ingress(self._channel)
        self._declared = True
        log.info("ingress publisher ready", queue=self._topology.raw)

    async def publish(self, body: bytes, meta: RawMeta) -> None:
        channel = self._channel
        if channel is None or channel.is_closed or not self._declared:
            raise BrokerUnavailable("broker not connected")
        try:
            await asyncio.wait_for(
                channel.default_exchange.publish(
                    meta.message(body), routing_key=self._topology.raw, mandatory=True
                ),
                timeout=self._settings.confirm_timeout,
            )
        except TimeoutError:
            raise BrokerUnavailable("broker did not confirm in time") from None
        except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            raise BrokerUnavailable(f"broker refused the message: {exc!r}") from None

    async def close(self) -> None:
        self._declared = False
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
            self._channel = None
