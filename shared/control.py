"""Holding a consumer: the control state in RabbitMQ, shared by the workers and the command.

Two things under the prefix, nothing outside RabbitMQ:

``<prefix>.control`` (a stream)
    Every pause and resume ever made, one small JSON record each (about 150 bytes), in
    order. A stream is read without being consumed away: every worker reads it from its
    first record when it starts (the latest record of a consumer is its state) and keeps
    reading it, so a change reaches every replica as it is appended. To know where "now" is,
    a reader appends a sync marker of its own and reads up to it.

``<prefix>.control.ask`` (a fanout exchange)
    Questions to the running workers ("what do you hold?"): each worker binds a queue of its
    own and answers to the asker's ``reply_to`` with what it runs (breaker states, rate
    limits). Answers are live only; nothing is stored.

A record's ``until`` is an absolute time (epoch seconds): a pause ``--for`` a while ends on
every replica at that moment, whoever is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from shared.amqp import within
from shared.topology import STREAM_ARGUMENTS, STREAM_FROM_FIRST
from shared.wire.headers import STREAM_OFFSET

__all__ = [
    "ControlLog",
    "PauseRecord",
    "answer_body",
    "ask_exchange",
    "control_stream",
    "held_now",
    "read_states",
]

#: What a reader may hold of the stream unacknowledged (a stream needs a prefetch).
_PREFETCH = 256


def control_stream(prefix: str) -> str:
    """The stream of pause and resume records of ``prefix``."""
    return f"{prefix}.control"


def ask_exchange(prefix: str) -> str:
    """The fanout exchange the workers of ``prefix`` answer questions on."""
    return f"{prefix}.control.ask"


@dataclass(frozen=True, slots=True)
class PauseRecord:
    """One change of a consumer's hold: paused (until when, None: until resumed) or resumed,
    by whom (``cli`` or a token's name), at what time (epoch seconds)."""

    consumer: str
    paused: bool
    by: str
    at: float
    until: float | None = None

    def paused_at(self, now: float) -> bool:
        """Whether the consumer is held at ``now`` (a pause with a deadline ends by itself)."""
        return self.paused and (self.until is None or now < self.until)

    def encode(self) -> bytes:
        return json.dumps({"kind": "pause", **asdict(self)}).encode()

    @classmethod
    def decode(cls, body: bytes) -> PauseRecord | None:
        """The record in ``body``; None for a sync marker or anything else."""
        try:
            data = json.loads(body)
            if not isinstance(data, dict) or data.get("kind") != "pause":
                return None
            until = data.get("until")
            return cls(
                consumer=str(data["consumer"]),
                paused=bool(data["paused"]),
                by=str(data["by"]),
                at=float(data["at"]),
                until=float(until) if until is not None else None,
            )
        except (ValueError, KeyError, TypeError):
            return None


OnRecord = Callable[[PauseRecord], Awaitable[None] | None]


class ControlLog:
    """The control stream of one prefix, on a channel of the caller's."""

    def __init__(self, channel: AbstractChannel, prefix: str) -> None:
        self.channel = channel
        self.name = control_stream(prefix)
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._offset = -1  # the last offset read: a reconnection reads from the first again

    async def declare(self, *, passive: bool = False) -> AbstractQueue:
        """The stream (``passive``: only if it exists; else the broker closes the channel
        with ``ChannelNotFoundEntity``)."""
        if self._queue is None:
            await self.channel.set_qos(prefetch_count=_PREFETCH)
            self._queue = await self.channel.declare_queue(
                self.name, durable=True, arguments=STREAM_ARGUMENTS, passive=passive
            )
        return self._queue

    async def append(self, record: PauseRecord) -> None:
        """Append ``record`` (confirmed when the channel confirms)."""
        await self.declare()
        await self._publish(record.encode())

    async def _publish(self, body: bytes) -> None:
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self.channel.default_exchange.publish(message, routing_key=self.name)

    async def follow(
        self, on_record: OnRecord, *, within: float = 10.0, passive: bool = False
    ) -> None:
        """Read every record from the first and keep reading new ones as they come; returns
        once the records appended before this call were read. ``on_record`` gets, at that
        point, the latest record of each consumer (its state now, not its history), then
        every new record as it comes."""
        queue = await self.declare(passive=passive)
        marker = uuid.uuid4().hex
        caught_up = asyncio.Event()
        history: dict[str, PauseRecord] = {}

        async def apply(record: PauseRecord) -> None:
            result = on_record(record)
            if result is not None:
                await result

        async def on_message(message: AbstractIncomingMessage) -> None:
            offset = (message.headers or {}).get(STREAM_OFFSET)
            if isinstance(offset, int):
                if offset <= self._offset:  # read before the connection was restored
                    with contextlib.suppress(Exception):
                        await message.ack()
                    return
                self._offset = offset
            record = PauseRecord.decode(message.body)
            if record is not None and not caught_up.is_set():
                history[record.consumer] = record
            elif record is not None:
                await apply(record)
            elif marker.encode() in message.body and not caught_up.is_set():
                for latest in history.values():
                    await apply(latest)
                caught_up.set()
            with contextlib.suppress(Exception):
                await message.ack()

        self._tag = await queue.consume(on_message, arguments=STREAM_FROM_FIRST)
        await self._publish(json.dumps({"kind": "sync", "marker": marker}).encode())
        await asyncio.wait_for(caught_up.wait(), within)

    async def stop(self) -> None:
        """Stop following (a broker that is away never holds this up: at most 5 s)."""
        if self._queue is not None and self._tag is not None:
            await within(5.0, self._queue.cancel(self._tag), "cancel the control stream")
            self._tag = None


async def read_states(channel: AbstractChannel, prefix: str) -> dict[str, PauseRecord]:
    """The latest record of every consumer that was ever paused (read, then stopped); none
    when no worker or pause ever made the stream (nothing is created)."""
    latest: dict[str, PauseRecord] = {}

    def keep(record: PauseRecord) -> None:
        latest[record.consumer] = record

    log = ControlLog(channel, prefix)
    try:
        await log.follow(keep, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return {}
    finally:
        await log.stop()
    return latest


def held_now(states: Mapping[str, PauseRecord], now: float | None = None) -> set[str]:
    """The consumers of ``states`` paused at ``now`` (default: now)."""
    moment = time.time() if now is None else now
    return {name for name, record in states.items() if record.paused_at(moment)}


def answer_body(data: Mapping[str, Any]) -> bytes:
    """A worker's answer, as it travels."""
    return json.dumps(data).encode()
