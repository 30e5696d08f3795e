"""The router: raw bodies in, one event per job out to the topic exchange.

Each raw message is parsed, its events are published (confirmed) with their routing keys,
and only then is the raw message acked. Events that share a routing key and wait for the
broker at the same moment leave as one message (``workers.router.outbox``, ``shared.wire.events``).
A body that does not parse goes, byte for byte with its properties, to ``<prefix>.unparsed``
with the reason in ``x-parse-error`` (and ``x-parse-location`` when known).

A batch message from the ingress (group commit, ``shared.wire.raw``) is unpacked and each
of its bodies is routed or parked exactly as the lone message it would have been
(``workers.router.rawbodies``); the batch is acked once all of them are, or handed back as a whole.

While the broker blocks the connection (a memory or disk alarm, ``shared.alarms``), a new
delivery waits for the alarm to clear before it is routed: nothing is tried that the broker
would not take, and nothing is handed back or counted as an attempt.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    HeadersType,
)

from shared import otel
from shared.amqp import within
from shared.callbacks.events import CallbackEvent
from shared.callbacks.parser import parse_callback
from shared.confirms import RenewingChannel
from shared.errors import ParseError
from shared.logs import get_logger
from shared.metrics import Metrics
from shared.service import ConsumingRole
from shared.settings import Settings
from shared.topology import Topology
from shared.wire.envelope import parked_copy
from shared.wire.headers import PARSE_ERROR, PARSE_LOCATION
from workers.router.metrics import RouterMetrics, sender_delay
from workers.router.outbox import Outbox
from workers.router.rawbodies import RawBody, raw_bodies
from workers.settling import InFlight, wait_all
from workers.settling import pause_before_requeue as _pause_before_requeue

if TYPE_CHECKING:
    from workers.router.otel import RouterSpans

__all__ = ["RouterService"]

log = get_logger("router")


class RouterService(ConsumingRole):
    """Consumes ``<prefix>.raw``; competing consumers scale it across processes."""

    name = "router"

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        *,
        routes_after: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """``routes_after``, when given, is awaited before the raw queue is consumed: `run`
        passes its worker's start, so that no event is routed before its consumer's queue is
        bound (it would go to ``<prefix>.unrouted``)."""
        super().__init__(settings, metrics)
        self._routes_after = routes_after
        self.topology = Topology(settings.prefix, settings.quorum_initial_group_size)
        self._counted = RouterMetrics(self.metrics) if self.metrics is not None else None
        self._channel: AbstractChannel | None = None  # consumes the raw queue
        self._publishing: RenewingChannel[AbstractExchange] | None = None  # events, parking
        self._outbox: Outbox | None = None
        self._raw: AbstractQueue | None = None
        self._tag: str | None = None
        self._inflight = InFlight()
        self._spans: RouterSpans | None = None
        if otel.STATE.on:  # spans, only when tracing is on
            from workers.router.otel import RouterSpans

            self._spans = RouterSpans(self.topology)

    async def _consume(self, connection: AbstractRobustConnection) -> None:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=self.settings.router_prefetch)
        self._raw, _ = await self.topology.declare_router(channel)
        # Events and parked bodies go out on a channel of their own, renewed after a nack
        # (shared.confirms); a raw body is acked on its own channel once they are confirmed.
        self._publishing = RenewingChannel(connection, self.topology.declare_events, what="router")
        await self._publishing.open()
        self._outbox = Outbox(
            self._publishing,
            event_format=self.settings.event_format,
            max_events=self.settings.event_batch_max,
            batch_events=self._counted.batch_events if self._counted is not None else None,
        )
        self._channel = channel
        if self._routes_after is not None:
            await self._routes_after()
        self._tag = await self._raw.consume(self._on_message)
        log.info("router consuming", queue=self.topology.raw)

    @property
    def ready(self) -> bool:
        """Connected, and consuming the raw queue."""
        channel = self._channel
        return self._tag is not None and channel is not None and not channel.is_closed

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self._stopping:
            await message.nack(requeue=True)
            return
        with self._inflight.tracking():
            # While blocked its events could not be published: held, not attempted.
            if self.alarm.blocked and not await self.alarm.cleared():
                with contextlib.suppress(Exception):  # stopping: back to the raw queue
                    await message.nack(requeue=True)
                return
            await self._route(message)

    async def _route(self, message: AbstractIncomingMessage) -> None:
        """Route every body the delivery carries; ack it once all are published or parked.

        The bodies are parsed one after the other in this task (parsing never waits); their
        events join the outbox as they come, and the delivery waits once for all of them.
        """
        spans = self._spans.delivery(message) if self._spans is not None else None
        try:
            try:
                bodies = raw_bodies(message)
            except ParseError as exc:  # a batch that does not unpack is parked whole
                await self._park(parked_copy(message, _reason(exc)), exc)
            else:
                waiting: list[Awaitable[None]] = []
                # Only the routing keys wait for the confirms: the bodies, envelopes and
                # events are let go as soon as they are encoded, so that the collector does
                # not scan the events of every delivery in flight again and again.
                keys: list[str] = []
                delays: list[float | None] = []  # the sender's, beside each key
                routed = 0
                unparsed: list[tuple[RawBody, ParseError]] = []
                for body in bodies:
                    events = self._parse(body) if spans is None else spans.parse(body, self._parse)
                    if isinstance(events, ParseError):
                        unparsed.append((body, events))
                    else:
                        waiting.extend(self._outbox_of().add(events))
                        keys.extend(event.routing_key for event in events)
                        delays.extend(sender_delay(event) for event in events)
                        routed += 1
                del bodies, body, events
                for lone, error in unparsed:  # parked once every body is parsed
                    waiting.append(self._park(lone.parked(_reason(error)), error))
                await wait_all(waiting)
                if spans is not None:
                    spans.confirmed()
                self._count(routed, keys, delays)
        except Exception as exc:
            if spans is not None:
                spans.failed(exc)
            # Not confirmed: hand the body back, after a pause (the broker's delivery limit
            # stops a loop, and a pause keeps a failover from using the delivery up).
            if self._publishing is not None:
                self._publishing.refused(exc)
            log.warning("publish failed, requeued", request_id=message.message_id, error=repr(exc))
            await _pause_before_requeue()
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            return
        await message.ack()

    def _outbox_of(self) -> Outbox:
        assert self._outbox is not None
        return self._outbox

    def _parse(self, body: RawBody) -> list[CallbackEvent] | ParseError:
        """The events of one body, or why it must be parked."""
        counted = self._counted
        started = time.perf_counter()
        try:
            return parse_callback(
                body.body,
                content_type=body.envelope.content_type,
                headers=body.envelope.headers,
                max_bytes=self.settings.max_body_bytes,
                envelope=body.envelope,
            )
        except ParseError as exc:
            return exc
        except Exception as exc:  # a parser bug must park the body, not loop on it
            log.exception("parser crashed", request_id=body.request_id)
            return ParseError(f"parser crashed: {exc!r}")
        finally:
            if counted is not None:
                counted.parse_seconds.observe(time.perf_counter() - started)

    def _count(self, routed: int, keys: list[str], delays: list[float | None]) -> None:
        """Count the bodies routed and their events (by routing key, with the sender's
        delay), once confirmed."""
        counted = self._counted
        if counted is None:
            return
        counted.routed.inc(routed)
        for key, delay in zip(keys, delays, strict=True):
            counted.event_routed(key, delay)

    async def _park(self, copy: aio_pika.Message, error: ParseError) -> None:
        """Publish ``copy`` (a body, or a whole batch, with ``error``) to the unparsed queue."""
        channel = self._publishing.channel if self._publishing is not None else None
        assert channel is not None
        await channel.default_exchange.publish(copy, routing_key=self.topology.unparsed)
        if self._counted is not None:
            self._counted.parked.inc()
        log.warning(
            "unparsed body parked",
            request_id=copy.message_id,
            reason=error.reason,
            location=error.location,
        )

    async def _settle(self) -> None:
        if self._raw is not None and self._tag is not None:
            await within(5.0, self._raw.cancel(self._tag), "cancel consumer")
        cut_off = await self._inflight.finish(self.settings.shutdown_grace)
        if cut_off:
            log.warning("deliveries cut off at shutdown", count=cut_off)
        if self._outbox is not None:
            await self._outbox.close()


def _reason(error: ParseError) -> HeadersType:
    """The headers that say why a body was parked."""
    headers: HeadersType = {PARSE_ERROR: error.reason[:2000]}
    if error.location:
        headers[PARSE_LOCATION] = error.location
    return headers
