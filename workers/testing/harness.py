"""One consumer run in-process, no broker, under its real policy."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from shared.callbacks.events import CallbackEvent
from shared.callbacks.routing import topic_matches
from shared.settings import Settings
from shared.wire.events import encode
from workers.consumer import LoadedConsumer
from workers.middleware import Middleware
from workers.runtime.dedupe import MemoryDedupeStore
from workers.runtime.handling import ConsumerPolicy, Outcome, handle_delivery
from workers.testing.events import parse_body

__all__ = ["ConsumerHarness", "NotRouted"]

#: Deliveries :meth:`ConsumerHarness.run` makes at most (a retry that costs no attempt loops).
_MOST_DELIVERIES = 100


class NotRouted(AssertionError):
    """The consumer's routes do not match the event: the runtime would never deliver it."""


class ConsumerHarness:
    """A consumer with the runtime's decision code around it: what would the runtime do?

    ``target`` is what ``@consumer`` declared (a function or a ``Consumer`` class) or a
    loaded consumer (a configured built-in). ``settings`` supply the defaults its
    declaration leaves open (the documented defaults unless given; the environment is not
    read). ``middleware`` runs around the handler as a worker's would (outermost first).
    Duplicates are remembered for the harness's life, as one worker would.
    ``async with`` runs the consumer's ``startup`` and ``shutdown`` hooks; without it the
    first delivery runs ``startup`` and :meth:`close` runs ``shutdown``.
    """

    def __init__(
        self,
        target: object,
        *,
        settings: Settings | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self.consumer = (
            target
            if isinstance(target, LoadedConsumer)
            else LoadedConsumer.from_target(target, "test")
        )
        self.settings = settings if settings is not None else Settings.model_construct()
        self.policy = ConsumerPolicy.for_consumer(self.consumer.spec, self.settings, middleware)
        self.dedupe = MemoryDedupeStore()
        self._started = False
        self._closed = False

    @property
    def name(self) -> str:
        return self.consumer.spec.name

    @property
    def started(self) -> bool:
        return self._started

    @property
    def closed(self) -> bool:
        return self._closed

    def routes_to(self, event: CallbackEvent) -> bool:
        """Whether the consumer's routes match the event's routing key."""
        return any(topic_matches(route, event.routing_key) for route in self.consumer.spec.routes)

    async def deliver(self, event: CallbackEvent, *, attempt: int = 1) -> Outcome:
        """One delivery of ``event`` as the ``attempt``-th try (1: it comes from the router)."""
        if not self.routes_to(event):
            raise NotRouted(
                f"consumer {self.name!r} with routes {list(self.consumer.spec.routes)} is not "
                f"bound to {event.routing_key!r}: the runtime would never deliver it"
            )
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        await self._start()
        entry = encode(event)  # what the router publishes
        return await handle_delivery(self.consumer, self.policy, entry, attempt - 1, self.dedupe)

    async def run(self, event: CallbackEvent) -> list[Outcome]:
        """Every delivery of ``event`` until it is handled, dropped or parked, in order.

        Retries come back at once; each outcome says how long the runtime would wait.
        """
        outcomes = [await self.deliver(event)]
        while outcomes[-1].retried and len(outcomes) < _MOST_DELIVERIES:
            outcomes.append(await self.deliver(event, attempt=outcomes[-1].attempts + 1))
        return outcomes

    async def feed(self, body: bytes | Path, *, content_type: str | None = None) -> list[Outcome]:
        """A callback body (bytes or a file) through the real parser, then the first delivery
        of every event it yields that the consumer's routes match, in order.

        Raises :class:`~shared.errors.ParseError` for a body the router would park.
        """
        if isinstance(body, Path):
            body = await asyncio.to_thread(body.read_bytes)
        events = parse_body(body, content_type=content_type)
        return [await self.deliver(event) for event in events if self.routes_to(event)]

    async def _start(self) -> None:
        if self._closed:
            raise RuntimeError(f"the harness of {self.name!r} is closed")
        if not self._started:
            self._started = True
            await self.consumer.startup()

    async def close(self) -> None:
        """Run the consumer's ``shutdown`` hook if ``startup`` ran. Idempotent."""
        if self._started and not self._closed:
            self._closed = True
            await self.consumer.shutdown()
        self._closed = True

    async def __aenter__(self) -> ConsumerHarness:
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
