"""Consumers for the start-order test: ``early`` takes a while to start (its queue is bound,
then its startup hook sleeps), so the worker binds ``late``'s queue only after that pause;
``late`` wants every event and records the job ids it handled."""

from __future__ import annotations

import asyncio

from workers import CallbackEvent, Consumer, consumer

#: Seconds ``early``'s startup hook takes: the window in which a router that did not wait
#: for the worker would route the backlog before ``late``'s queue is bound.
STARTUP_SECONDS = 1.5

#: Job ids ``late`` handled, in this process.
HANDLED: list[str] = []


@consumer(name="early", routes=["Nothing.Is.Routed.Here"])
class Early(Consumer):
    async def startup(self) -> None:
        await asyncio.sleep(STARTUP_SECONDS)

    async def handle(self, event: CallbackEvent) -> None:
        """Never given an event: nothing routes here."""


@consumer(name="late", routes=["#"])
async def late(event: CallbackEvent) -> None:
    HANDLED.append(event.job_id or "")
