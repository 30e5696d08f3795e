"""Fixtures of the holding tests: worker replicas in the test's loop, a consumer that tallies
what it handles (with each delivery's attempt), events published into its queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import Metrics, render
from shared.settings import Settings
from shared.wire.events import event_message
from tests.support.broker import BrokerClient
from tests.support.metrics import Scrape
from tests.support.system import START_TIMEOUT
from workers import Breaker, CallbackEvent, Delivery, consumer
from workers.consumer import LoadedConsumer
from workers.runtime.worker import WorkerService
from workers.testing import make_event

__all__ = ["StartWorker", "Tally", "consumers_on", "publish", "queue_of", "scraped", "tallying"]


@dataclass
class Tally:
    """What the replicas of one consumer handled: (idempotency key, attempt, loop time)."""

    handled: list[tuple[str, int, float]] = field(default_factory=list)
    release: asyncio.Event | None = None  # handlers wait for it when set

    @property
    def keys(self) -> list[str]:
        return [key for key, _, _ in self.handled]

    @property
    def attempts(self) -> list[int]:
        return [attempt for _, attempt, _ in self.handled]


def tallying(
    name: str,
    tally: Tally,
    *,
    concurrency: int | None = None,
    rate_limit: float | None = None,
    breaker: Breaker | None = None,
    filter: Mapping[str, Any] | None = None,
) -> LoadedConsumer:
    """A consumer ``name`` of every event that counts what it handles in ``tally``."""

    @consumer(
        name=name,
        routes=["#"],
        concurrency=concurrency,
        rate_limit=rate_limit,
        breaker=breaker,
        filter=filter,
    )
    async def handle(event: CallbackEvent, delivery: Delivery) -> None:
        if tally.release is not None:
            await tally.release.wait()
        tally.handled.append(
            (event.idempotency_key, delivery.attempt, asyncio.get_running_loop().time())
        )

    return LoadedConsumer.from_target(handle, f"test:{name}")


def scraped(metrics: Metrics | None) -> Scrape:
    """What a scrape of ``metrics`` would read."""
    assert metrics is not None
    samples: dict[Any, float] = {}
    for family in text_string_to_metric_families(render(metrics).decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples)


def queue_of(settings: Settings, name: str) -> str:
    return f"{settings.prefix}.consumer.{name}"


async def publish(
    broker: BrokerClient, queue: str, events: int | Sequence[CallbackEvent]
) -> list[str]:
    """Publish events (``events`` new ones, or those given) into ``queue``, one message
    each, as the router would; their idempotency keys."""
    made = [make_event() for _ in range(events)] if isinstance(events, int) else list(events)
    channel = await broker.connection.channel(publisher_confirms=True)
    try:
        for event in made:
            await channel.default_exchange.publish(event_message(event), routing_key=queue)
    finally:
        await channel.close()
    return [event.idempotency_key for event in made]


async def consumers_on(broker: BrokerClient, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of ``queue``, exactly."""
    channel = await broker.connection.channel()
    try:
        declared = await broker.topology.declare_queue(channel, queue)
        result = declared.declaration_result
        return result.message_count or 0, result.consumer_count or 0
    finally:
        await channel.close()


StartWorker = Callable[..., Awaitable[WorkerService]]


@pytest.fixture
async def start_worker(settings: Settings, broker: BrokerClient) -> AsyncIterator[StartWorker]:
    """``await start_worker([consumer, ...], settings_=...)``: a worker replica, started
    (stopped at teardown; the broker fixture removes its queues and the control stream)."""
    running: list[WorkerService] = []

    async def start(
        consumers: Sequence[LoadedConsumer], *, settings_: Settings | None = None
    ) -> WorkerService:
        chosen = settings_ or settings
        broker.track([c.spec.name for c in consumers], chosen.retry_delays)
        worker = WorkerService(chosen, consumers)
        running.append(worker)
        await worker.start()
        await asyncio.wait_for(worker.wait_started(), START_TIMEOUT)
        return worker

    yield start
    for worker in running:
        await worker.stop()
