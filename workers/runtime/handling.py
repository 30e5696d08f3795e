"""What happens to one delivery of an event to a consumer: the runtime's one decision.

:func:`handle_delivery` validates one event of a delivery, claims its key when the
consumer deduplicates, runs the handler under its timeout and decides, from the consumer's
policy and the attempts already made, what becomes of it: handled, dropped as a duplicate,
retried after a delay, or parked. The worker (``workers.runtime.worker``) carries the decision out
on the broker; the test kit (``workers.testing``) reports it. Both call this function, so a
test sees what the runtime would do.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from dataclasses import dataclass, replace
from typing import Literal

import pydantic

from shared.callbacks.events import CallbackEvent
from shared.errors import GiveUp, Retry
from shared.settings import Settings
from shared.wire.events import Entry
from workers.consumer import ConsumerSpec, LoadedConsumer
from workers.runtime.dedupe import Claim, DedupeStore
from workers.runtime.retry import RetryPolicy

__all__ = ["ConsumerPolicy", "Outcome", "OutcomeKind", "describe", "handle_delivery"]

OutcomeKind = Literal["handled", "duplicate", "retried", "parked"]


@dataclass(frozen=True)
class ConsumerPolicy:
    """A consumer's declared policy with the settings' defaults filled in."""

    retry: RetryPolicy
    timeout: float
    concurrency: int
    dedupe: bool
    dedupe_window: float

    @classmethod
    def for_consumer(cls, spec: ConsumerSpec, settings: Settings) -> ConsumerPolicy:
        return cls(
            retry=RetryPolicy.for_consumer(spec, settings),
            timeout=spec.timeout or settings.handler_timeout,
            concurrency=spec.concurrency or settings.concurrency,
            dedupe=spec.dedupe,
            dedupe_window=spec.dedupe_window or settings.dedupe_window,
        )


@dataclass(frozen=True)
class Outcome:
    """What the runtime does with one delivery.

    ``attempt`` is this delivery's attempt (1 for the first). ``attempts`` is the count the
    retried or parked copy carries (``x-attempts``): it equals ``attempt``, except for a
    delivery put back because another worker holds the same event, which costs no attempt.
    ``delay`` is the seconds before the next attempt (``retried`` only); ``reason`` why it
    failed (``retried`` and ``parked``); ``handler_seconds`` how long the handler ran (None
    when it did not run).
    """

    kind: OutcomeKind
    attempt: int
    attempts: int
    event: CallbackEvent | None = None
    reason: str | None = None
    delay: float | None = None
    timed_out: bool = False
    handler_seconds: float | None = None

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
) -> Outcome:
    """Run ``consumer`` on the event of ``entry`` (one event of a message, as it travelled).

    ``dedupe`` is used only when the policy deduplicates. Raises only what the dedupe store
    raises after the handler succeeded, and ``CancelledError``.
    """
    attempt = attempts_done + 1
    try:
        event = entry.event()
    except pydantic.ValidationError as exc:
        return Outcome("parked", attempt, attempt, reason=f"event does not validate: {exc}")
    store = dedupe if policy.dedupe else None
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
    started = time.perf_counter()
    try:
        async with asyncio.timeout(policy.timeout):  # no task of its own, unlike wait_for
            await consumer.handle(event)
    except asyncio.CancelledError:
        raise  # cut off at shutdown: the claim expires after its hold, the broker redelivers
    except Exception as exc:
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
        return Outcome("parked", attempt, attempt, event, f"GiveUp: {exc}")
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


def describe(exc: BaseException) -> str:
    """``ExceptionType: message``, one line, as reasons and logs show an error."""
    return traceback.format_exception_only(type(exc), exc)[-1].strip()
