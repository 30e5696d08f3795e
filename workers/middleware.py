"""The hook around handling: middleware, for what every consumer of a worker needs.

A middleware is any async callable ``(event, delivery, call_next)``; it runs around the
handler of every consumer of the worker and must await ``call_next()`` once to run the rest
of the chain (the next middleware, then the handler)::

    class Tracing:
        async def __call__(
            self, event: CallbackEvent, delivery: Delivery, call_next: CallNext
        ) -> None:
            with tracer.start_as_current_span(delivery.consumer) as span:
                span.set_attribute("request_id", delivery.request_id)
                await call_next()  # raises what the handler raised

What escapes the chain decides the outcome exactly as a handler's exception does: return
and the event is handled; raise and it is retried (``GiveUp``: parked). A middleware that
reports errors re-raises them; one that swallows an exception turns a failure into a success.
A middleware that does not call ``call_next()`` skips the handler (the event counts as
handled).

Where a worker finds its middleware: the ``callback_fanout.middleware`` entry-point group
of every installed package, in name order, outermost first (each entry point names a
middleware object or a class taking no arguments; ``--no-entry-points`` turns them off with
the consumers'), or ``WorkerService(..., middleware=[...])`` and
``ConsumerHarness(..., middleware=[...])`` in code. The runtime's own
:class:`TimeLimit` is innermost, so a middleware sees a handler's timeout as a
``TimeoutError`` and its time counts in no handler's limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.callbacks.events import CallbackEvent
from workers.delivery import Delivery

__all__ = ["CallNext", "Middleware", "TimeLimit", "run_chain"]

#: What a middleware awaits to run the rest of the chain.
CallNext = Callable[[], Awaitable[None]]


class Middleware(Protocol):
    """Runs around every handler of a worker; see the module's documentation."""

    def __call__(
        self, event: CallbackEvent, delivery: Delivery, call_next: CallNext, /
    ) -> Awaitable[None]:
        """Do what comes before the handler, ``await call_next()``, do what comes after."""
        ...


@dataclass(frozen=True, slots=True)
class TimeLimit:
    """The runtime's handler timeout: cut the handler off after ``seconds``."""

    seconds: float

    async def __call__(self, event: CallbackEvent, delivery: Delivery, call_next: CallNext) -> None:
        async with asyncio.timeout(self.seconds):  # no task of its own, unlike wait_for
            await call_next()


def run_chain(
    chain: Sequence[Middleware],
    handle: Callable[[CallbackEvent, Delivery], Awaitable[None]],
    event: CallbackEvent,
    delivery: Delivery,
) -> Awaitable[None]:
    """Run ``chain`` (outermost first) around ``handle(event, delivery)``."""

    def step(index: int) -> Awaitable[None]:
        if index == len(chain):
            return handle(event, delivery)
        return chain[index](event, delivery, lambda: step(index + 1))

    return step(0)
