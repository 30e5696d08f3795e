"""Running consumers: one queue, channel, prefetch and retry policy per consumer.

A message's way through :class:`ConsumerRunner`, top to bottom: ``_on_message`` takes it
(or hands it back at shutdown, or after a publish that failed); ``_handle`` unpacks its
events (``entries_of``, the wire's: one, or several of one routing key) and parks a message
that does not unpack, whole (``parked_copy``); ``_handle_entry`` runs each event, at most
``concurrency`` at once, through :mod:`workers.runtime.handling`, which decides and then
settles it (a retried or parked event leaves as a message of its own); the message is acked
once each of its events is settled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from shared import otel
from shared.alarms import BrokerAlarm
from shared.amqp import connect, within
from shared.logs import get_logger
from shared.metrics import Metrics
from shared.service import ConsumingRole
from shared.settings import Settings
from shared.topology import ConsumerQueues, Topology
from shared.wire.envelope import parked_copy
from shared.wire.events import EVENT_COUNT_HEADER, Entry, EventFormatError, entries_of
from shared.wire.headers import ATTEMPTS, REPLAY
from workers.consumer import LoadedConsumer
from workers.loader import load_middleware
from workers.middleware import Middleware
from workers.runtime.acks import AckGroup
from workers.runtime.control import WorkerControl
from workers.runtime.dedupe import DedupeStore, build_store
from workers.runtime.handling import (
    ConsumerPolicy,
    Outcome,
    describe,
    handle_delivery,
    parked_headers,
    settle,
)
from workers.runtime.history import HistoryWriter
from workers.runtime.holding import HandedBack, Hold, hold_for
from workers.runtime.metrics import ConsumerMetrics, WorkerMetrics
from workers.settling import InFlight, pause_before_requeue, wait_all

__all__ = ["ConsumerRunner", "WorkerService"]

log = get_logger("worker")


@dataclass
class ConsumerRunner:
    """One consumer's loop on its own channel."""

    consumer: LoadedConsumer
    settings: Settings
    topology: Topology
    dedupe: DedupeStore | None = None
    metrics: ConsumerMetrics | None = None
    middleware: Sequence[Middleware] = ()
    history: HistoryWriter | None = None
    alarm: BrokerAlarm | None = None  # while the broker blocks the connection: held
    handling: ConsumerPolicy = field(init=False)
    queues: ConsumerQueues = field(init=False)
    hold: Hold = field(init=False)  # paused, breaker, rate limit: consume or not
    _channel: AbstractChannel | None = None
    _queue: AbstractQueue | None = None
    _stopping: bool = False
    _inflight: InFlight = field(default_factory=InFlight)
    _acks: AckGroup = field(default_factory=AckGroup)
    _slots: asyncio.Semaphore = field(init=False)  # handlers running at once

    def __post_init__(self) -> None:
        spec = self.consumer.spec
        self.handling = ConsumerPolicy.for_consumer(spec, self.settings, self.middleware)
        self.queues = self.topology.consumer(self.consumer.spec.name, self.handling.retry.delays)
        if not self.handling.dedupe:
            self.dedupe = None
        self._slots = asyncio.Semaphore(self.handling.concurrency)
        self.hold = hold_for(spec, self.settings, self.metrics, self.handling.concurrency)

    @property
    def concurrency(self) -> int:
        return self.handling.concurrency

    @property
    def name(self) -> str:
        return self.consumer.spec.name

    @property
    def ready(self) -> bool:
        channel = self._channel
        return self.hold.attached and channel is not None and not channel.is_closed

    async def start(self, connection: AbstractRobustConnection) -> None:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=self.concurrency)
        self._queue = await self.topology.declare_consumer(
            channel, self.queues, self.consumer.spec.routes
        )
        self._channel = channel
        await self.consumer.startup()
        await self.hold.attach(channel, self._queue, self._on_message)
        log.info(
            "consumer started",
            state=self.hold.state,
            consumer=self.name,
            queue=self.queues.main,
            routes=list(self.consumer.spec.routes),
            concurrency=self.concurrency,
        )

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._acks.received(message)
        if self._stopping or self.hold.held:
            self._acks.settled(message)
            await message.nack(requeue=True)  # prefetched, not started: hand it back
            return
        with self._inflight.tracking():
            # While blocked, retries and parked copies could not be published: held.
            if self.alarm is not None and self.alarm.blocked and not await self.alarm.cleared():
                self._acks.settled(message)  # the worker stops: back to its queue
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
                return
            try:
                with self.hold.taking():
                    await self._handle(message)
            except HandedBack:  # held before any of its events started: back to its queue
                self._acks.settled(message)
                await message.nack(requeue=True)
            except asyncio.CancelledError:
                raise  # cut off at shutdown: unacked, the broker redelivers it
            except Exception as exc:
                # A retry or park that could not be published (broker, dedupe store): hand the
                # message back now rather than hold it unacked on a live channel.
                log.warning("could not settle message, requeued", error=describe(exc))
                await pause_before_requeue()
                with contextlib.suppress(Exception):
                    self._acks.settled(message)
                    await message.nack(requeue=True)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        """Handle every event the message carries; ack it once each is settled."""
        headers = message.headers or {}
        raw_attempts = headers.get(ATTEMPTS, 0)
        done = raw_attempts if isinstance(raw_attempts, int) else 0
        try:
            count = headers.get(EVENT_COUNT_HEADER)
            entries = entries_of(message.content_type, message.body, count)
        except EventFormatError as exc:  # parked whole, byte for byte
            reason = f"event message does not unpack: {exc.reason}"
            outcome = Outcome("parked", done + 1, done + 1, reason=reason)
            await self._publish(
                parked_copy(message, parked_headers(outcome, self.name)), self.queues.dead
            )
            log.error("event parked in dead queue", error=reason, queue=self.queues.dead)
            self._count(outcome, message)
        else:
            handle: Callable[[AbstractIncomingMessage, Entry, int], Awaitable[Outcome]]
            handle = self._handle_entry
            if otel.STATE.on:  # a span per attempt, only when tracing is on
                from workers.runtime.otel import traced_attempts

                handle = traced_attempts(self.name, self.queues.main, handle)
            if len(entries) == 1:
                await handle(message, entries[0], done)
            else:  # a task each: see _settled
                await wait_all([_settled(handle(message, entry, done)) for entry in entries])
        self._acks.ack(message)

    async def _handle_entry(
        self, message: AbstractIncomingMessage, entry: Entry, done: int
    ) -> Outcome:
        """Decide what becomes of one event of ``message`` and carry it out (the ack aside)."""
        structlog.contextvars.bind_contextvars(
            consumer=self.name, message_id=message.message_id, attempt=done + 1
        )
        metrics = self.metrics
        hold, slots = self.hold, self._slots
        await hold.turn(slots)  # holds one of the slots from here
        try:
            if metrics is not None:
                metrics.in_flight.inc()
            try:
                outcome = await handle_delivery(
                    self.consumer,
                    self.handling,
                    entry,
                    done,
                    self.dedupe,
                    replayed=REPLAY in (message.headers or {}),
                )
            finally:
                if metrics is not None:
                    metrics.in_flight.dec()
        finally:
            slots.release()
        if hold.breaker is not None:
            hold.settled(outcome)
        await settle(
            outcome, entry, message, consumer=self.name, queues=self.queues, publish=self._publish
        )
        self._count(outcome, message)
        return outcome

    def _count(self, outcome: Outcome, message: AbstractIncomingMessage) -> None:
        if self.metrics is not None:
            self.metrics.record(outcome)  # settled: acked, retried or parked
        if self.history is not None:
            self.history.record(self.name, outcome, message)  # queued, written aside

    async def _publish(self, copy: aio_pika.Message, queue: str) -> None:
        """Publish ``copy`` to ``queue`` and wait for the broker's confirm."""
        assert self._channel is not None
        if otel.STATE.on:  # the attempt that retried or parked it (workers.runtime.otel)
            copy.headers = {**(copy.headers or {}), **otel.inject()}
        await self._channel.default_exchange.publish(copy, routing_key=queue)

    async def stop(self, grace: float) -> None:
        """Stop taking messages, let in-flight handlers finish within ``grace``, then cancel."""
        if self._stopping:
            return
        self._stopping = True
        await self.hold.detach()
        cut_off = await self._inflight.finish(grace)
        if cut_off:
            log.warning("handlers cut off at shutdown", consumer=self.name, count=cut_off)
        await self._acks.drain()
        with contextlib.suppress(Exception):
            await self.consumer.shutdown()
        if self._channel is not None:
            await within(5.0, self._channel.close(), "close channel")


async def _settled(attempt: Awaitable[Outcome]) -> None:
    """``attempt``, its outcome dropped as soon as it is settled.

    The events of a message run as tasks gathered together (``wait_all``), and a gathered
    task keeps its result until the last of them is done: an outcome holds its event, so a
    message of 96 events kept 96 decoded events alive at once, which made the collector run
    and every event's decoding slower (about a fifth of a worker's CPU per event).
    """
    await attempt


class WorkerService(ConsumingRole):
    """Runs every loaded consumer in this process, each isolated on its own channel.

    ``middleware`` runs around every consumer's handler (:mod:`workers.middleware`); by
    default the ``callback_fanout.middleware`` entry points' when the ``entry_points``
    setting is on.
    """

    name = "worker"

    def __init__(
        self,
        settings: Settings,
        consumers: Sequence[LoadedConsumer],
        metrics: Metrics | None = None,
        *,
        middleware: Sequence[Middleware] | None = None,
    ) -> None:
        super().__init__(settings, metrics)
        if middleware is None:
            middleware = load_middleware(use_entry_points=settings.entry_points)
        self.topology = Topology(settings.prefix, settings.quorum_initial_group_size)
        self.store = build_store(settings) if any(c.spec.dedupe for c in consumers) else None
        counted = WorkerMetrics(self.metrics) if self.metrics is not None else None
        self.history = HistoryWriter.from_settings(settings, self.metrics)
        self.runners = [
            ConsumerRunner(
                c,
                settings,
                self.topology,
                self.store,
                counted.consumer(c.spec.name) if counted is not None else None,
                middleware,
                self.history,
                self.alarm,
            )
            for c in consumers
        ]
        self.control = WorkerControl(settings.prefix, {r.name: r.hold for r in self.runners})

    async def start(self) -> None:
        if not self.runners:
            log.warning("worker has no consumers: pass --consumer or install a consumer package")
        if self.history is not None:
            self.history.start()
        await super().start()

    async def _consume(self, connection: AbstractRobustConnection) -> None:
        # the holds set before anything is consumed, on a connection of the control's own
        own = await connect(self.settings, role="worker-control", stop=self._stop)
        await self.control.start(own)
        for runner in self.runners:
            await runner.start(connection)

    @property
    def ready(self) -> bool:
        """Every consumer connected and consuming."""
        return bool(self._starting and self._starting.done()) and all(r.ready for r in self.runners)

    def readiness(self) -> dict[str, object]:
        """Ready and connected, and which consumers are consuming."""
        return {**super().readiness(), "consumers": {r.name: r.ready for r in self.runners}}

    async def _settle(self) -> None:
        await self.control.stop()
        await asyncio.gather(*(r.stop(self.settings.shutdown_grace) for r in self.runners))
        if self.history is not None:
            await self.history.close()
        if self.store is not None:
            await self.store.close()
