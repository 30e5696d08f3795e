"""Operating the parking queues: count, inspect, replay and purge.

Parking queues are ``<prefix>.unparsed`` (bodies that did not parse), ``<prefix>.unrouted``
(events no consumer wanted) and ``<prefix>.consumer.<name>.dead`` (events a consumer could
not handle). Inspecting never removes anything: messages are fetched unacknowledged and
handed back when the channel closes. Replay publishes a copy (confirmed) to where the message
came from, with its original properties and the attempt count reset, then removes it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from callback_fanout.pacing import Pace
from shared import otel
from shared.callbacks.routing import topic_matches
from shared.errors import ConfigError
from shared.topology import Topology
from shared.wire.envelope import copy_with_headers
from shared.wire.events import Entry, EventFormatError, entries_of, is_events
from shared.wire.headers import (
    ATTEMPTS,
    BROKER_DEATH,
    CONSUMER,
    DEAD_AT,
    FIRST_DEATH_REASON,
    LAST_ERROR,
    PARSE_ERROR,
    PARSE_LOCATION,
    RECEIVED_AT_US,
    ROUTING_KEY,
)

#: AMQP's largest prefetch count, and how long a read waits for a message it counted.
_MAX_PREFETCH = 65535
#: Characters a body holds as they are, in JSON and in XML alike.
_PLAIN = re.compile(r"[A-Za-z0-9._:-]+")
_IDLE_SECONDS = 2.0

__all__ = ["MessageFilter", "ParkedMessage", "Parking"]

#: Headers the system added on the way to a parking queue; replay removes them.
PARKING_HEADERS = frozenset(
    {PARSE_ERROR, PARSE_LOCATION, ATTEMPTS, LAST_ERROR, CONSUMER, DEAD_AT, *BROKER_DEATH}
)


@dataclass(frozen=True)
class ParkedMessage:
    """One parked message as an operator sees it."""

    queue: str
    message: AbstractIncomingMessage

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.message.headers or {})

    @property
    def reason(self) -> str:
        h = self.headers
        if h.get(FIRST_DEATH_REASON) == "delivery_limit" and not h.get(LAST_ERROR):
            return "delivery limit: delivered again and again without an ack (crash or kills)"
        return str(h.get(PARSE_ERROR) or h.get(LAST_ERROR) or "no consumer bound")

    @property
    def routing_key(self) -> str | None:
        key = self.headers.get(ROUTING_KEY)
        return str(key) if key is not None else None

    @cached_property
    def _entries(self) -> list[Entry] | EventFormatError:
        """The body's events as they travelled, or why a framed body does not unpack."""
        try:
            return entries_of(self.message.content_type, self.message.body)
        except EventFormatError as exc:
            return exc

    @cached_property
    def _events(self) -> list[dict[str, Any]]:
        """The events in the body as JSON objects: one of the JSON format, or each framed
        entry's (``shared.wire.events``); none for a raw body or one that does not read."""
        message = self.message
        if message.content_type != "application/json" and not is_events(message.content_type):
            return []
        entries = self._entries
        if isinstance(entries, EventFormatError):
            return []
        try:
            docs = [json.loads(entry.doc) for entry in entries]
        except ValueError:
            return []
        return [doc for doc in docs if isinstance(doc, dict)]

    def _event_field(self, *path: str) -> object:
        """A field of the (first) event in the body; None for a raw body."""
        value: object = self._events[0] if self._events else None
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    @property
    def job_id(self) -> str | None:
        """The job id of the (first) event in the body."""
        value = self._event_field("job_id")
        return str(value) if value is not None else None

    def may_hold(self, *ids: str) -> bool:
        """False only when none of ``ids`` can be in the body: an id of plain characters is
        written as it is in JSON and XML alike, so its absence from the bytes says so without
        decoding the body (a filter over hundreds of bodies decodes only the likely ones)."""
        body = self.message.body
        return any(not _PLAIN.fullmatch(i) or i.encode() in body for i in ids)

    @property
    def job_ids(self) -> list[str]:
        """The job ids of every event in the body."""
        return [str(e["job_id"]) for e in self._events if e.get("job_id") is not None]

    def body_text(self) -> str:
        """The body as text: a framed message as its events' JSON and their raw bodies."""
        message = self.message
        if not is_events(message.content_type):
            return message.body.decode("utf-8", "backslashreplace")
        entries = self._entries
        if isinstance(entries, EventFormatError):
            return f"(does not unpack: {entries.reason}) " + repr(message.body[:2000])
        parts = []
        for entry in entries:
            parts.append(entry.doc.decode("utf-8", "backslashreplace"))
            parts.append((entry.raw or b"").decode("utf-8", "backslashreplace"))
        return "\n".join(parts)

    @property
    def since(self) -> datetime | None:
        """When it was parked (dead queues), else when the ingress received the body."""
        h = self.headers
        dead_at = h.get(DEAD_AT)
        if isinstance(dead_at, int | float) and not isinstance(dead_at, bool):
            return datetime.fromtimestamp(dead_at, UTC)
        received = h.get(RECEIVED_AT_US)
        if isinstance(received, int) and not isinstance(received, bool):
            return datetime.fromtimestamp(received / 1_000_000, UTC)
        stamp = self._event_field("envelope", "received_at")
        try:
            return datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
        except ValueError:
            return None

    def as_dict(self, *, with_body: bool) -> dict[str, Any]:
        h = self.headers
        out: dict[str, Any] = {
            "queue": self.queue,
            "message_id": self.message.message_id,
            "routing_key": self.routing_key,
            "job_id": self.job_id,
            "reason": self.reason,
            "attempts": h.get(ATTEMPTS),
            "content_type": self.message.content_type,
            "size": len(self.message.body),
            "headers": {k: _jsonable(v) for k, v in h.items()},
        }
        if is_events(self.message.content_type):
            out["events"] = len(self._events)
        if with_body:
            if is_events(self.message.content_type):
                out["events_json"] = self._events
                out["body"] = self._raw_text()
            else:
                out["body"] = self.message.body.decode("utf-8", "backslashreplace")
        return out

    def _raw_text(self) -> str:
        """The raw body of the first framed event, as the sender sent it."""
        entries = self._entries
        if isinstance(entries, EventFormatError):
            return ""
        return (entries[0].raw or b"").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class MessageFilter:
    """Which parked messages an operation applies to (all when every field is None)."""

    routing_key: str | None = None
    job_id: str | None = None
    reason: str | None = None
    message_ids: frozenset[str] | None = None  # these messages only (a console's selection)

    def matches(self, parked: ParkedMessage) -> bool:
        if self.message_ids is not None and parked.message.message_id not in self.message_ids:
            return False
        if self.routing_key is not None and not (
            parked.routing_key and topic_matches(self.routing_key, parked.routing_key)
        ):
            return False
        if self.job_id is not None and not (
            parked.may_hold(self.job_id) and self.job_id in parked.job_ids
        ):
            return False
        return self.reason is None or self.reason in parked.reason


class Parking:
    """The parking queues of one prefix."""

    def __init__(self, connection: AbstractRobustConnection, topology: Topology) -> None:
        self.connection = connection
        self.topology = topology

    def resolve(self, name: str) -> str:
        """``unparsed``, ``unrouted``, a consumer name (its dead queue) or a full queue name."""
        t = self.topology
        if name in ("unparsed", "unrouted"):
            return t.unparsed if name == "unparsed" else t.unrouted
        if name.startswith(f"{t.prefix}."):
            if name in (t.unparsed, t.unrouted) or name.endswith(".dead"):
                return name
            raise ConfigError(f"{name!r} is not a parking queue")
        return f"{t.prefix}.consumer.{name}.dead"

    async def counts(self, consumer_names: Sequence[str]) -> dict[str, int]:
        channel = await self.connection.channel()
        try:
            return {
                queue: await self.topology.message_count(channel, queue)
                for queue in self.topology.parking_queues(consumer_names)
            }
        finally:
            await channel.close()

    async def _each(
        self, channel: AbstractChannel, queue: str, where: MessageFilter, window: int | None = None
    ) -> AsyncIterator[ParkedMessage]:
        """Every matching message among the first ``window`` (None: all), fetched unacked
        (handed back when ``channel`` closes).

        The messages come from a consumer whose prefetch is the whole window, in the queue's
        order: one round trip for them all, not a ``basic.get`` each (500 of those took half a
        second to a second on a quorum queue). A message nobody acks stays unacked on
        ``channel`` until it closes.
        """
        declared = await self.topology.declare_queue(channel, queue)
        total = declared.declaration_result.message_count or 0
        wanted = total if window is None else min(total, window)
        if wanted == 0:
            return
        # unlimited above AMQP's largest prefetch: unacked messages must not stall the read
        await channel.set_qos(prefetch_count=wanted if wanted <= _MAX_PREFETCH else 0)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        await declared.consume(inbox.put, no_ack=False)  # it ends when the channel closes
        for _ in range(wanted):
            try:  # fewer than counted: another reader took some meanwhile
                message = await asyncio.wait_for(inbox.get(), _IDLE_SECONDS)
            except TimeoutError:
                return
            parked = ParkedMessage(queue, message)
            if where.matches(parked):
                yield parked

    async def _settled(self, queue: str, expected: int, seconds: float = 5.0) -> None:
        """Wait until what a closed channel handed back is in ``queue`` again.

        The broker returns unacked messages after the channel is closed, not before the close
        is confirmed: without this, a count or a second look right after would miss them.
        """
        channel = await self.connection.channel()
        try:
            deadline = asyncio.get_running_loop().time() + seconds
            while await self.topology.message_count(channel, queue) < expected:
                if asyncio.get_running_loop().time() > deadline:
                    return
                await asyncio.sleep(0.005)  # a passive declaration is cheap; a page waits
        finally:
            await channel.close()

    async def show(
        self, queue: str, where: MessageFilter, limit: int, window: int | None = None
    ) -> list[ParkedMessage]:
        """The first ``limit`` matching messages, looking at the first ``window`` of the
        queue at most (None: the whole queue); nothing is removed."""
        if where == MessageFilter():  # every message matches: no need to look further
            window = limit if window is None else min(window, limit)
        channel = await self.connection.channel()
        before = await self.topology.message_count(channel, queue)
        found: list[ParkedMessage] = []
        try:
            async for parked in self._each(channel, queue, where, window):
                found.append(parked)
                if len(found) >= limit:
                    break
        finally:
            await channel.close()  # nothing was acked: everything goes back
        await self._settled(queue, before)
        return found

    async def replay(
        self, queue: str, where: MessageFilter, *, dry_run: bool, rate: float | None = None
    ) -> int:
        """Send matching messages back where they came from, at most ``rate`` a second (None:
        as fast as the broker confirms); returns how many."""
        channel = await self.connection.channel(publisher_confirms=True)
        before = await self.topology.message_count(channel, queue)
        pace = Pace(rate)
        replayed = 0
        try:
            async for parked in self._each(channel, queue, where):
                if not dry_run:
                    await pace.wait()
                    exchange, key = await self._destination(channel, parked)
                    await exchange.publish(_fresh_copy(parked.message), routing_key=key)
                    await parked.message.ack()
                replayed += 1
        finally:
            await channel.close()
        await self._settled(queue, before - (0 if dry_run else replayed))
        return replayed

    async def purge(self, queue: str, where: MessageFilter) -> int:
        channel = await self.connection.channel()
        before = await self.topology.message_count(channel, queue)
        purged = 0
        try:
            async for parked in self._each(channel, queue, where):
                await parked.message.ack()
                purged += 1
        finally:
            await channel.close()
        await self._settled(queue, before - purged)
        return purged

    async def _destination(
        self, channel: AbstractChannel, parked: ParkedMessage
    ) -> tuple[aio_pika.abc.AbstractExchange, str]:
        t = self.topology
        if parked.queue == t.unparsed:
            return channel.default_exchange, t.raw
        if parked.queue == t.unrouted:
            events = await channel.get_exchange(t.events, ensure=False)
            return events, parked.routing_key or parked.message.routing_key or ""
        return channel.default_exchange, parked.queue.removesuffix(".dead")


def _fresh_copy(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The message as it was before it was parked: the parking headers removed."""
    headers = {k: v for k, v in (message.headers or {}).items() if k not in PARKING_HEADERS}
    return copy_with_headers(message, otel.replayed(headers))


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
