"""The router's events on their way to the topic exchange: group commit per routing key.

Events that wait for the broker at the same moment and share a routing key leave as one
message (``shared.wire.events``) and one confirm: the bodies of a raw batch, and the
bodies of every raw delivery routed in the same turn of the event loop, whatever the
delivery that carried them. An event that finds a free slot leaves at the next turn (alone,
unless others arrived in the same turn); while ``max_in_flight`` messages are unconfirmed,
the events that arrive wait and leave together, at most ``max_events`` or about
``max_bytes`` to a message. :meth:`Outbox.add` gives the futures of the messages its events
joined; each resolves on the message's confirm or fails with what its publish raised: the
router then hands the raw delivery back, and those of its events already published are
published again on redelivery (at least once; the idempotency key names them).

With ``event_format = "json"`` each event leaves alone as its JSON, the raw body inside
(the format before 0.2.0, ``shared.wire.events.json_message``), for consumers that read the
queues without this runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from aio_pika.abc import AbstractExchange

from shared.callbacks.events import CallbackEvent
from shared.confirms import RenewingChannel
from shared.metrics import Histogram
from shared.wire.events import Entry, encode, events_message, json_entry, json_message

__all__ = ["EventFormat", "Outbox"]

EventFormat = Literal["framed", "json"]


@dataclass(slots=True)
class _Group:
    """Events waiting to leave under one routing key, and the future they share."""

    routing_key: str
    first: CallbackEvent
    done: asyncio.Future[None]
    entries: list[Entry] = field(default_factory=list)
    size: int = 0


class Outbox:
    """Publishes events with confirms on the router's publishing channel, grouped."""

    def __init__(
        self,
        publishing: RenewingChannel[AbstractExchange],
        *,
        event_format: EventFormat = "framed",
        max_events: int = 100,
        max_bytes: int = 1024 * 1024,
        max_in_flight: int = 4,
        batch_events: Histogram | None = None,
    ) -> None:
        if max_events < 1 or max_bytes < 1 or max_in_flight < 1:
            raise ValueError("batch bounds and max_in_flight must be at least 1")
        self._publishing = publishing
        self._format = event_format
        self._max_events = 1 if event_format == "json" else max_events
        self._max_bytes = max_bytes
        self._max_in_flight = max_in_flight
        self._batch_events = batch_events
        self._open: dict[str, _Group] = {}  # routing key -> the group events join
        self._full: list[_Group] = []  # closed, waiting for a slot, oldest first
        self._in_flight: set[asyncio.Task[None]] = set()
        self._flush_scheduled = False
        #: Messages and events confirmed since start (tests and diagnostics).
        self.messages_confirmed = 0
        self.events_confirmed = 0

    def add(self, events: Sequence[CallbackEvent]) -> list[asyncio.Future[None]]:
        """Queue ``events``; the futures of the messages they joined (each resolves on the
        message's confirm, or fails with what its publish raised). Await every one."""
        loop = asyncio.get_running_loop()
        joined: list[asyncio.Future[None]] = []
        for event in events:
            group = self._join(event, loop)
            if not joined or joined[-1] is not group.done:
                joined.append(group.done)
        if not self._flush_scheduled and len(self._in_flight) < self._max_in_flight:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return joined

    def _join(self, event: CallbackEvent, loop: asyncio.AbstractEventLoop) -> _Group:
        key = event.routing_key
        entry = json_entry(event) if self._format == "json" else encode(event)
        size = len(entry.doc) + (0 if entry.raw is None else len(entry.raw))
        group = self._open.get(key)
        if group is not None and (
            len(group.entries) >= self._max_events or group.size + size > self._max_bytes
        ):
            self._full.append(self._open.pop(key))
            group = None
        if group is None:
            group = self._open[key] = _Group(key, event, loop.create_future())
        group.entries.append(entry)
        group.size += size
        return group

    def _flush(self) -> None:
        """Send what waits, as long as there is a free slot: full groups first."""
        self._flush_scheduled = False
        loop = asyncio.get_running_loop()
        while len(self._in_flight) < self._max_in_flight:
            if self._full:
                group = self._full.pop(0)
            elif self._open:
                key = next(iter(self._open))
                group = self._open.pop(key)
            else:
                return
            task = loop.create_task(self._send(group))
            self._in_flight.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if (self._full or self._open) and not self._flush_scheduled:
            self._flush()

    async def _send(self, group: _Group) -> None:
        try:
            exchange = self._publishing.declared
            if self._format == "json":
                message = json_message(group.first, group.entries[0].doc)
            else:
                message = events_message(group.routing_key, group.entries, group.first)
            await exchange.publish(message, routing_key=group.routing_key)
        except asyncio.CancelledError:
            if not group.done.done():
                group.done.set_exception(RuntimeError("publish cancelled"))
            raise
        except Exception as exc:
            self._publishing.refused(exc)  # a nack: this channel may be stale
            if not group.done.done():
                group.done.set_exception(exc)
            return
        self.messages_confirmed += 1
        self.events_confirmed += len(group.entries)
        if self._batch_events is not None:
            self._batch_events.observe(len(group.entries))
        if not group.done.done():
            group.done.set_result(None)

    async def close(self) -> None:
        """Wait for the messages in flight (the router stops after its deliveries)."""
        if self._in_flight:
            with contextlib.suppress(Exception):
                await asyncio.wait(set(self._in_flight), timeout=5.0)
