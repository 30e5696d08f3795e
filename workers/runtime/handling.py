"""One event of a delivery, from its bytes to its outcome: the runtime's one decision.

Read top to bottom, an event goes:

1. :func:`handle_delivery` decodes it (``Entry.event``, the wire's), checks that it is of
   the kind the handler's ``CallbackEvent[...]`` takes, claims its key when the consumer
   deduplicates, runs the middleware chain around the handler (the policy's timeout
   innermost) and decides what becomes of it: handled, dropped as a duplicate, retried after
   a delay, or parked. It touches no broker: the test kit (``workers.testing``) calls it to
   report what the runtime would do, so a test sees what the worker does.
2. :func:`settle` carries a decision out on the broker: a retried or parked event leaves as
   a message of its own (``Entry.message``, the wire's) for the consumer's delay or dead
   queue. The worker (``workers.runtime.worker``) calls both, then acks the message.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import aio_pika
import pydantic
from aio_pika.abc import AbstractIncomingMessage, HeadersType

from shared.callbacks.events import CallbackEvent
from shared.callbacks.filters import EventFilter
from shared.errors import GiveUp, Retry
from shared.logs import get_logger
from shared.settings import Settings
from shared.topology import ConsumerQueues
from shared.wire.events import Entry
from shared.wire.headers import ATTEMPTS, CONSUMER, DEAD_AT, LAST_ERROR
from workers.consumer import ConsumerSpec, LoadedConsumer
from workers.delivery import Delivery
from workers.middleware import Middleware, TimeLimit, run_chain
from workers.runtime.dedupe import Claim, DedupeStore
from workers.runtime.retry import RetryPolicy

__all__ = [
    "ConsumerPolicy",
    "Outcome",
    "OutcomeKind",
    "Publish",
    "describe",
    "handle_delivery",
    "parked_headers",
    "settle",
]

log = get_logger("worker")

OutcomeKind = Literal["handled", "duplicate", "retried", "parked", "filtered"]

#: Publishes (confirmed) a message to a queue of the default exchange.
Publish = Callable[[aio_pika.Message, str], Awaitable[object]]

#: The longest reason a copy carries in its ``x-last-error`` header.
_MOST_REASON = 4000


@dataclass(frozen=True)
class ConsumerPolicy:
    """A consumer's declared policy with the settings' defaults filled in.

    ``chain`` is the middleware run around its handler, outermost first: the worker's own,
    then the policy's :class:`~workers.middleware.TimeLimit`; empty when the worker has no
    middleware (the handler then runs under its timeout without a chain: a chain of the
    timeout alone cost a worker about 10 us an event).
    """

    retry: RetryPolicy
    timeout: float
    concurrency: int
    dedupe: bool
    dedupe_window: float
    chain: tuple[Middleware, ...] = ()
    filter: EventFilter | None = None

    @classmethod
    def for_consumer(
        cls, spec: ConsumerSpec, settings: Settings, middleware: Sequence[Middleware] = ()
    ) -> ConsumerPolicy:
        timeout = spec.timeout or settings.handler_timeout
        return cls(
            retry=RetryPolicy.for_consumer(spec, settings),
            timeout=timeout,
            concurrency=spec.concurrency or settings.concurrency,
            dedupe=spec.dedupe,
            dedupe_window=spec.dedupe_window or settings.dedupe_window,
            chain=(*middleware, TimeLimit(timeout)) if middleware else (),
            filter=spec.filter,
        )


@dataclass(frozen=True)
class Outcome:
    """What the runtime does with one delivery.

    ``attempt`` is this delivery's attempt (1 for the first). ``attempts`` is the count the
    retried or parked copy carries (``x-attempts``): it equals ``attempt``, except for a
    delivery put back because another worker holds the same event, which costs no attempt.
    ``delay`` is the seconds before the next attempt (``retried`` only); ``reason`` why it
    failed (``retried`` and ``parked``); ``handler_seconds`` how long the handler ran, its
    middleware included (None when it did not run).
    """

    kind: OutcomeKind
    attempt: int
    attempts: int
    event: CallbackEvent | None = None
    reason: str | None = None
    delay: float | None = None
    timed_out: bool = False
    handler_seconds: float | None = None
    gave_up: bool = False  # parked because the handler raised GiveUp

    @property
    def handled(self) -> bool:
        return self.kind == "handled"

    @property
    def duplicate(self) -> bool:
        return self.kind == "duplicate"

    @property
    def retried(self) -> bool:
        return self.kind == "retried"

    @property
    def parked(self) -> bool:
        return self.kind == "parked"


async def handle_delivery(
    consumer: LoadedConsumer,
    policy: ConsumerPolicy,
    entry: Entry,
    attempts_done: int,
    dedupe: DedupeStore | None,
    *,
    replayed: bool = False,
) -> Outcome:
    """Run ``consumer`` on the event of ``entry`` (one event of a message, as it travelled).

    ``dedupe`` is used only when the policy deduplicates, and never for an event ``replayed``
    from the archive (``x-replay``): an operator re-delivers it on purpose. Raises only what
    the dedupe store raises after the handler succeeded, and ``CancelledError``.
    """
    attempt = attempts_done + 1
    try:
        event = entry.event()
    except pydantic.ValidationError as exc:
        return Outcome("parked", attempt, attempt, reason=f"event does not validate: {exc}")
    if policy.filter is not None and not policy.filter.accepts(event):
        return Outcome("filtered", attempt, attempts_done, event)  # acked, never handled
    if consumer.operations is not None:
        mismatch = consumer.operations.mismatch(event)
        if mismatch is not None:  # another kind of event: no try of this handler will take it
            return Outcome("parked", attempt, attempt, event, mismatch)
    store = dedupe if policy.dedupe and not replayed else None
    key = f"{consumer.spec.name}:{event.idempotency_key}"
    if store is not None:
        try:
            claim = await store.claim(key, policy.timeout + 5.0)
        except Exception as exc:
            return _failed(policy, event, attempt, attempt, f"dedupe store: {describe(exc)}")
        if claim is Claim.DONE:
            return Outcome("duplicate", attempt, attempts_done, event)
        if claim is Claim.BUSY:  # not a failure of this handler: costs no attempt
            reason = "the same event is being handled"
            return _failed(policy, event, attempt, attempts_done, reason)
    delivery = Delivery.of(event, consumer.spec.name, attempt, policy.retry.max_attempts)
    started = time.perf_counter()
    try:
        if policy.chain:
            await run_chain(policy.chain, consumer.call, event, delivery)
        else:
            async with asyncio.timeout(policy.timeout):  # the chain of TimeLimit alone, inline
                await consumer.call(event, delivery)
    except Exception as exc:  # CancelledError passes: cut off at shutdown, redelivered
        ran = time.perf_counter() - started
        if store is not None:
            await store.release(key)
        return replace(_failure(policy, event, attempt, exc), handler_seconds=ran)
    ran = time.perf_counter() - started
    if store is not None:
        await store.done(key, policy.dedupe_window)
    return Outcome("handled", attempt, attempt, event, handler_seconds=ran)


def _failure(policy: ConsumerPolicy, event: CallbackEvent, attempt: int, exc: Exception) -> Outcome:
    if isinstance(exc, GiveUp):
        return Outcome("parked", attempt, attempt, event, f"GiveUp: {exc}", gave_up=True)
    if isinstance(exc, pydantic.ValidationError):
        return Outcome("parked", attempt, attempt, event, f"not retryable: {describe(exc)}")
    if isinstance(exc, TimeoutError):
        reason = f"timed out after {policy.timeout:g}s"
        return _failed(policy, event, attempt, attempt, reason, timed_out=True)
    requested = exc.delay if isinstance(exc, Retry) else None
    return _failed(policy, event, attempt, attempt, describe(exc), requested=requested)


def _failed(
    policy: ConsumerPolicy,
    event: CallbackEvent,
    attempt: int,
    counted: int,
    reason: str,
    *,
    requested: float | None = None,
    timed_out: bool = False,
) -> Outcome:
    """Retry after the policy's delay, or park when the attempts are used up."""
    if not policy.retry.should_retry(counted):
        return Outcome("parked", attempt, counted, event, reason, timed_out=timed_out)
    delay = policy.retry.delay_after(max(counted, 1), requested)
    return Outcome("retried", attempt, counted, event, reason, delay, timed_out)


async def settle(
    outcome: Outcome,
    entry: Entry,
    source: AbstractIncomingMessage,
    *,
    consumer: str,
    queues: ConsumerQueues,
    publish: Publish,
) -> None:
    """Carry ``outcome`` out: a retried or parked event leaves ``source`` as a message of its
    own, published (confirmed) to ``consumer``'s delay or dead queue (``queues``); the
    caller acks ``source``."""
    if outcome.kind == "handled":
        log.debug("handled", elapsed=round(outcome.handler_seconds or 0.0, 4))
        return
    if outcome.kind == "filtered":
        log.debug("filtered out")
        return
    if outcome.kind == "duplicate":
        assert outcome.event is not None
        log.info("duplicate dropped", idempotency_key=outcome.event.idempotency_key)
        return
    reason = outcome.reason or ""
    if outcome.kind == "retried":
        assert outcome.delay is not None
        headers: HeadersType = {ATTEMPTS: outcome.attempts, LAST_ERROR: reason[:_MOST_REASON]}
        await publish(
            entry.message(source, headers, outcome.event), queues.delay_queue(outcome.delay)
        )
        log.warning("handler failed, will retry", error=reason, retry_in=outcome.delay)
        return
    copy = entry.message(source, parked_headers(outcome, consumer), outcome.event)
    await publish(copy, queues.dead)
    log.error("event parked in dead queue", error=reason, queue=queues.dead)


def parked_headers(outcome: Outcome, consumer: str) -> HeadersType:
    """What a copy parked in ``consumer``'s dead queue carries: why, after how many tries."""
    return {
        ATTEMPTS: outcome.attempts,
        LAST_ERROR: (outcome.reason or "")[:_MOST_REASON],
        CONSUMER: consumer,
        # whole seconds: the AMQP client sends a float as 32 bits (±64 s today)
        DEAD_AT: int(time.time()),
    }


def describe(exc: BaseException) -> str:
    """``ExceptionType: message``, one line, as reasons and logs show an error."""
    return traceback.format_exception_only(type(exc), exc)[-1].strip()
