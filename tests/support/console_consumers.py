"""The consumers of the console's tests, loaded by name (``--consumer``) as an operator's
would be, so the console sees their policy: ``thumbs`` handles every successful job's event
(a filter), ``flaky`` fails
while :data:`FAILING` says so (then its events are retried once and parked)."""

from __future__ import annotations

from workers import CallbackEvent, Delivery, consumer

#: The job ids ``thumbs`` handled, with each delivery's attempt, in order.
HANDLED: list[tuple[str | None, int]] = []
#: Whether ``flaky`` fails now (a test sets it).
FAILING = {"flaky": True}
NAMES = ("thumbs", "flaky")
TARGETS = [f"{__name__}:{name}" for name in NAMES]


@consumer(name="thumbs", routes=["#"], concurrency=4, filter={"code": ["Success", "0"]})
async def thumbs(event: CallbackEvent, delivery: Delivery) -> None:
    HANDLED.append((event.job_id, delivery.attempt))


@consumer(name="flaky", routes=["#"], max_attempts=2, retry_delays=[0.2])
async def flaky(event: CallbackEvent) -> None:
    if FAILING["flaky"]:
        raise RuntimeError(f"flaky refuses job {event.job_id} on purpose")
