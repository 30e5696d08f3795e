"""Running consumers: one queue, channel, prefetch and retry policy per consumer.

For each event of a message (one, or several of one routing key: ``shared.wire.events``):
rebuild the event, run the handler (with a timeout). On failure, republish the event alone
to the consumer's delay queue for the next attempt (it expires back into the consumer
queue) or, when attempts are used up or the consumer gave up, to its dead queue with the
last error. The message is acked once each of its events is handled or its copy confirmed.
At most ``concurrency`` handlers run at once, whatever the messages hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    HeadersType,
)

from shared.amqp import within
from shared.callbacks.events import CallbackEvent
from shared.logs import get_logger
from shared.metrics import Metrics
from shared.service import ConsumingRole
from shared.settings import Settings
from shared.topology import ConsumerQueues, Topology
from shared.wire.envelope import parked_copy
from shared.wire.events import EVENT_COUNT_HEADER, Entry, EventFormatError, entries_of
from workers.consumer import LoadedConsumer
from workers.runtime.acks import AckGroup
from workers.runtime.dedupe import DedupeStore, build_store
from workers.runtime.handling import ConsumerPolicy, Outcome, describe, handle_delivery
from workers.runtime.metrics import ConsumerMetrics, WorkerMetrics
from workers.settling import pause_before_requeue, wait_all

__all__ = ["ConsumerRunner", "WorkerService"]

log = get_logger("worker")

ATTEMPTS_HEADER = "x-attempts"


@dataclass
class ConsumerRunner:
    """One consumer's loop on its own channel."""

    consumer: LoadedConsumer
    settings: Settings
    topology: Topology
    dedupe: DedupeStore | None = None
    metrics: ConsumerMetrics | None = None
    handling: ConsumerPolicy = field(init=False)
    queues: ConsumerQueues = field(init=False)
    _channel: AbstractChannel | None = None
    _queue: AbstractQueue | None = None
    _tag: str | None = None
    _stopping: bool = False
    _inflight: set[asyncio.Task[None]] = field(default_factory=set)
    _acks: AckGroup = field(default_factory=AckGroup)
    _slots: asyncio.Semaphore = field(init=False)  # handlers running at once

    def __post_init__(self) -> None:
        self.handling = ConsumerPolicy.for_consumer(self.consumer.spec, self.settings)
        self.queues = self.topology.consumer(self.consumer.spec.name, self.handling.retry.delays)
        if not self.handling.dedupe:
            self.dedupe = None
        self._slots = asyncio.Semaphore(self.handling.concurrency)

    @property
    def concurrency(self) -> int:
        return self.handling.concurrency

    @property
    def name(self) -> str:
        return self.consumer.spec.name

    @property
    def ready(self) -> bool:
        channel = self._channel
        return self._tag is not None and channel is not None and not channel.is_closed

    async def start(self, connection: AbstractRobustConnection) -> None:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=self.concurrency)
        self._queue = await self.topology.declare_consumer(
            channel, self.queues, self.consumer.spec.routes
        )
        self._channel = channel
        await self.consumer.startup()
        self._tag = await self._queue.consume(self._on_message)
        log.info(
            "consumer started",
            consumer=self.name,
            queue=self.queues.main,
            routes=list(self.consumer.spec.routes),
            concurrency=self.concurrency,
        )

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._acks.received(message)
        if self._stopping:
            self._acks.settled(message)
            await message.nack(requeue=True)  # prefetched, not started: hand it back
            return
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            await self._handle(message)
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
        finally:
            self._inflight.discard(task)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        """Handle every event the message carries; ack it once each is settled."""
        headers = message.headers or {}
        raw_attempts = headers.get(ATTEMPTS_HEADER, 0)
        done = raw_attempts if isinstance(raw_attempts, int) else 0
        try:
            count = headers.get(EVENT_COUNT_HEADER)
            entries = entries_of(message.content_type, message.body, count)
        except EventFormatError as exc:  # parked whole, byte for byte
            reason = f"event message does not unpack: {exc.reason}"
            outcome = Outcome("parked", done + 1, done + 1, reason=reason)
            await self._dead(message, outcome)
            self._count(outcome)
        else:
            if len(entries) == 1:
                await self._handle_entry(message, entries[0], done, alone=True)
            else:
                await self._handle_all(message, entries, done)
        self._acks.ack(message)

    async def _handle_all(
        self, message: AbstractIncomingMessage, entries: list[Entry], done: int
    ) -> None:
        """The events of one message side by side, within the consumer's concurrency."""
        await wait_all([self._handle_entry(message, entry, done, alone=False) for entry in entries])

    async def _handle_entry(
        self, message: AbstractIncomingMessage, entry: Entry, done: int, *, alone: bool
    ) -> None:
        """Run the handler on one event and carry out the outcome (the message's ack aside).

        An event retried or parked leaves as a message of its own: the message itself when
        it carries nothing else (``alone``), else a message of this one entry.
        """
        structlog.contextvars.bind_contextvars(
            consumer=self.name, message_id=message.message_id, attempt=done + 1
        )
        metrics = self.metrics
        async with self._slots:
            if metrics is not None:
                metrics.in_flight.inc()
            try:
                started = time.monotonic()
                outcome = await handle_delivery(
                    self.consumer, self.handling, entry, done, self.dedupe
                )
            finally:
                if metrics is not None:
                    metrics.in_flight.dec()
        if outcome.kind == "handled":
            log.debug("handled", elapsed=round(time.monotonic() - started, 4))
        elif outcome.kind == "duplicate":
            assert outcome.event is not None
            log.info("duplicate dropped", idempotency_key=outcome.event.idempotency_key)
        elif outcome.kind == "retried":
            await self._retry(message, entry if not alone else None, outcome)
        else:
            await self._dead(message, outcome, entry if not alone else None)
        self._count(outcome)

    def _count(self, outcome: Outcome) -> None:
        if self.metrics is not None:
            self.metrics.record(outcome)  # settled: acked, retried or parked

    async def _retry(
        self, message: AbstractIncomingMessage, entry: Entry | None, outcome: Outcome
    ) -> None:
        assert outcome.delay is not None
        error = outcome.reason or ""
        await self._republish(
            message,
            entry,
            {ATTEMPTS_HEADER: outcome.attempts, "x-last-error": error[:4000]},
            self.queues.delay_queue(outcome.delay),
            outcome.event,
        )
        log.warning("handler failed, will retry", error=error, retry_in=outcome.delay)

    async def _dead(
        self, message: AbstractIncomingMessage, outcome: Outcome, entry: Entry | None = None
    ) -> None:
        error = outcome.reason or ""
        headers: HeadersType = {
            ATTEMPTS_HEADER: outcome.attempts,
            "x-last-error": error[:4000],
            "x-consumer": self.name,
            # whole seconds: the AMQP client sends a float as 32 bits (±64 s today)
            "x-dead-at": int(time.time()),
        }
        await self._republish(message, entry, headers, self.queues.dead, outcome.event)
        log.error("event parked in dead queue", error=error, queue=self.queues.dead)

    async def _republish(
        self,
        message: AbstractIncomingMessage,
        entry: Entry | None,
        headers: HeadersType,
        queue: str,
        event: CallbackEvent | None,
    ) -> None:
        """Publish (confirmed) the message, or one entry of it alone, with ``headers``."""
        assert self._channel is not None
        if entry is None:
            copy = parked_copy(message, headers)
        else:
            copy = entry.message(message, headers, event)
        await self._channel.default_exchange.publish(copy, routing_key=queue)

    async def stop(self, grace: float) -> None:
        """Stop taking messages, let in-flight handlers finish within ``grace``, then cancel."""
        if self._stopping:
            return
        self._stopping = True
        if self._queue is not None and self._tag is not None:
            await within(5.0, self._queue.cancel(self._tag), "cancel consumer")
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()  # unacked: the broker redelivers it to another worker
            if pending:
                await asyncio.wait(pending, timeout=1.0)
                log.warning("handlers cut off at shutdown", consumer=self.name, count=len(pending))
        await self._acks.drain()
        with contextlib.suppress(Exception):
            await self.consumer.shutdown()
        if self._channel is not None:
            await within(5.0, self._channel.close(), "close channel")


class WorkerService(ConsumingRole):
    """Runs every loaded consumer in this process, each isolated on its own channel."""

    name = "worker"

    def __init__(
        self,
        settings: Settings,
        consumers: Sequence[LoadedConsumer],
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__(settings, metrics)
        self.topology = Topology(settings.prefix, settings.quorum_initial_group_size)
        self.store = build_store(settings) if any(c.spec.dedupe for c in consumers) else None
        counted = WorkerMetrics(self.metrics) if self.metrics is not None else None
        self.runners = [
            ConsumerRunner(
                c,
                settings,
                self.topology,
                self.store,
                counted.consumer(c.spec.name) if counted is not None else None,
            )
            for c in consumers
        ]

    async def start(self) -> None:
        if not self.runners:
            log.warning("worker has no consumers: pass --consumer or install a consumer package")
        await super().start()

    async def _consume(self, connection: AbstractRobustConnection) -> None:
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
        await asyncio.gather(*(r.stop(self.settings.shutdown_grace) for r in self.runners))
        if self.store is not None:
            await self.store.close()
