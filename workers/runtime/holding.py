"""Holding one consumer in one worker: paused, its breaker, its rate limit.

A held consumer takes no new events: its ``basic.consume`` is cancelled, so what is not
taken stays in its queue, attempts untouched; what was delivered to this worker but not
started is handed back (``nack``, requeued); handlers already running finish. It consumes
again when nothing holds it. Two things hold it:

- a pause (``consumers pause``, read from the control stream by
  :mod:`workers.runtime.control`), until resumed or until its deadline;
- its circuit breaker (:mod:`workers.runtime.breaker`) while open; half-open, it consumes
  with a prefetch of one and lets one event through.

Its rate limit (:mod:`workers.runtime.ratelimit`) holds each event before the handler until
the budget allows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from shared.amqp import within
from shared.control import PauseRecord
from shared.logs import get_logger
from shared.settings import Settings
from workers.consumer import ConsumerSpec
from workers.runtime.breaker import BreakerState, CircuitBreaker
from workers.runtime.handling import Outcome
from workers.runtime.metrics import ConsumerMetrics
from workers.runtime.ratelimit import RateLimiter, build_limiter

__all__ = ["HandedBack", "Hold", "hold_for"]

log = get_logger("worker")

OnMessage = Callable[[AbstractIncomingMessage], Awaitable[None]]


class HandedBack(Exception):
    """A message taken but not started when its consumer was held: hand it back."""


class _Taken:
    """A message in this worker: has any of its events reached its turn? As a context
    manager, around the message's handling: a message none of whose events started, handed
    back while the consumer is held, leaves the ``with`` as ``HandedBack``.

    A class with ``__enter__``/``__exit__`` rather than a generator: it is made once per
    message, and a generator-based context manager costs several times more.
    """

    __slots__ = ("_hold", "_token", "handed_back", "started", "task")

    def __init__(self, hold: Hold) -> None:
        self._hold = hold
        self.task: asyncio.Task[Any] | None = asyncio.current_task()
        self.started = False
        self.handed_back = False
        self._token: contextvars.Token[_Taken | None] | None = None

    def __enter__(self) -> _Taken:
        self._hold._taken.add(self)
        self._token = _TAKEN.set(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: object, tb: object) -> None:
        if self._token is not None:
            _TAKEN.reset(self._token)
        self._hold._taken.discard(self)
        if (
            kind is not None
            and issubclass(kind, asyncio.CancelledError)
            and self.handed_back
            and not self.started
        ):
            if self.task is not None:
                self.task.uncancel()  # handed back, not cut off: the task goes on
            raise HandedBack from None


_TAKEN: contextvars.ContextVar[_Taken | None] = contextvars.ContextVar("taken", default=None)


@dataclass
class Hold:
    """What holds one consumer here, and its consumption of its queue."""

    consumer: str
    concurrency: int
    breaker: CircuitBreaker | None = None
    limiter: RateLimiter | None = None
    metrics: ConsumerMetrics | None = None
    paused: PauseRecord | None = None  # the pause in force, None: not paused
    _channel: AbstractChannel | None = None
    _queue: AbstractQueue | None = None
    _on_message: OnMessage | None = None
    _tag: str | None = None
    _prefetch: int = 0
    _trial_taken: bool = False
    _taken: set[_Taken] = field(default_factory=set)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _resume_timer: asyncio.TimerHandle | None = None
    _stopped: bool = False
    _applying: set[asyncio.Task[None]] = field(default_factory=set)

    # -- the state -----------------------------------------------------------------------

    @property
    def breaker_state(self) -> BreakerState | None:
        return self.breaker.state if self.breaker is not None else None

    @property
    def held(self) -> bool:
        """Whether it takes no new events now (paused, or its breaker open)."""
        if self.paused is not None:
            return True
        breaker = self.breaker
        return breaker is not None and breaker.state is BreakerState.OPEN

    @property
    def state(self) -> str:
        """``running``, ``paused``, ``breaker open`` or ``half-open``."""
        if self.paused is not None:
            return "paused"
        if self.breaker_state is BreakerState.OPEN:
            return "breaker open"
        if self.breaker_state is BreakerState.HALF_OPEN:
            return "half-open"
        return "running"

    @property
    def attached(self) -> bool:
        """Consuming, or not consuming on purpose."""
        return self._channel is not None and (self._tag is not None or self.held)

    def describe(self) -> dict[str, Any]:
        """What this worker holds of the consumer, as its answer to ``consumers list``."""
        return {
            "state": self.state,
            "consuming": self._tag is not None,
            "paused_until": self.paused.until if self.paused is not None else None,
            "breaker": self.breaker_state.label if self.breaker_state is not None else None,
            "rate_limit": self.limiter.rate if self.limiter is not None else None,
            "rate_scope": self.limiter.scope if self.limiter is not None else None,
        }

    # -- changes -------------------------------------------------------------------------

    def pause(self, record: PauseRecord) -> None:
        """Apply a control record: paused (until its deadline) or resumed."""
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None
        now = time.time()
        was = self.paused
        self.paused = record if record.paused_at(now) else None
        if self.paused is not None and record.until is not None:
            loop = asyncio.get_running_loop()
            self._resume_timer = loop.call_later(record.until - now, self._deadline, record)
        if (was is None) != (self.paused is None):
            what = "consumer paused" if self.paused is not None else "consumer resumed"
            log.info(what, consumer=self.consumer, by=record.by, until=record.until)
        if self.metrics is not None:
            self.metrics.paused.set(1 if self.paused is not None else 0)
        self._changed_state()

    def _deadline(self, record: PauseRecord) -> None:
        self._resume_timer = None
        if self.paused is record:
            self.paused = None
            log.info("consumer resumed", consumer=self.consumer, by=record.by, reason="deadline")
            if self.metrics is not None:
                self.metrics.paused.set(0)
            self._changed_state()

    def breaker_moved(self, old: BreakerState, new: BreakerState) -> None:
        """The breaker's ``on_change``: one log line, the metrics, and consume or not."""
        log.warning(
            "breaker " + new.label,
            consumer=self.consumer,
            was=old.label,
            cool_down=self.breaker.declared.cool_down if self.breaker is not None else None,
        )
        if self.metrics is not None:
            self.metrics.breaker_state.set(int(new))
            self.metrics.breaker_transitions[new.label].inc()
        self._trial_taken = False
        self._changed_state()

    def _changed_state(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        if self.held:
            self._hand_back_unstarted()
        if self._channel is not None and not self._stopped:
            task = asyncio.get_running_loop().create_task(self._apply_logged())
            self._applying.add(task)
            task.add_done_callback(self._applying.discard)

    async def _apply_logged(self) -> None:
        try:
            await self.apply()
        except Exception as exc:  # the channel is gone: a robust one consumes as it was
            log.warning("could not change consuming", consumer=self.consumer, error=repr(exc))

    def _hand_back_unstarted(self) -> None:
        for taken in list(self._taken):
            if not taken.started and not taken.handed_back and taken.task is not None:
                taken.handed_back = True
                taken.task.cancel()

    # -- consuming -----------------------------------------------------------------------

    async def attach(self, channel: AbstractChannel, queue: AbstractQueue, on: OnMessage) -> None:
        """Consume ``queue`` with ``on`` unless held (the worker's start)."""
        self._channel, self._queue, self._on_message = channel, queue, on
        self._prefetch = self.concurrency
        await self.apply()

    async def apply(self) -> None:
        """Consume or not, with the prefetch the state asks for."""
        async with self._lock:
            channel, queue = self._channel, self._queue
            if channel is None or queue is None or self._on_message is None or self._stopped:
                return
            half_open = self.breaker_state is BreakerState.HALF_OPEN
            prefetch = 1 if half_open else self.concurrency
            if self._tag is not None and (self.held or prefetch != self._prefetch):
                tag, self._tag = self._tag, None
                await within(5.0, queue.cancel(tag), "cancel consumer")
            if not self.held and self._tag is None:
                if prefetch != self._prefetch:
                    await channel.set_qos(prefetch_count=prefetch)
                    self._prefetch = prefetch
                self._tag = await queue.consume(self._on_message)

    async def detach(self) -> None:
        """Stop consuming (the worker stops); the timers go."""
        self._stopped = True
        if self._resume_timer is not None:
            self._resume_timer.cancel()
        if self.breaker is not None:
            self.breaker.close()
        async with self._lock:
            if self._queue is not None and self._tag is not None:
                tag, self._tag = self._tag, None
                await within(5.0, self._queue.cancel(tag), "cancel consumer")
        if self.limiter is not None:
            with contextlib.suppress(Exception):
                await self.limiter.close()

    # -- one message, one event ----------------------------------------------------------

    def taking(self) -> _Taken:
        """Around one message (``with``): a message none of whose events started is handed
        back when the consumer is held (``HandedBack`` out of the ``with``)."""
        return _Taken(self)

    async def turn(self, slots: asyncio.Semaphore) -> None:
        """Wait for one event's turn: the consumer not held (half-open: the one trial), a
        free slot of its concurrency, then its rate budget. The caller holds one of
        ``slots`` once this returns and releases it when the event is done; nothing is held
        when this raises.

        A coroutine and a ``try``/``finally`` at the caller rather than an async context
        manager: it runs once per event, and with nothing holding the consumer (no pause,
        no breaker, no rate limit) it is two checks and the semaphore.
        """
        while True:
            while not self._passable():
                await self._changed.wait()
            await slots.acquire()
            if self._passable():
                break
            slots.release()
        taken = _TAKEN.get()
        if taken is not None:
            taken.started = True
        breaker = self.breaker
        if breaker is not None and breaker.state is BreakerState.HALF_OPEN:
            self._trial_taken = True
        limiter = self.limiter
        if limiter is not None:
            try:
                await limiter.wait()
            except BaseException:
                slots.release()
                raise

    def _passable(self) -> bool:
        if self.paused is not None:
            return False
        breaker = self.breaker
        if breaker is None:
            return True
        state = breaker.state
        if state is BreakerState.OPEN:
            return False
        return not (state is BreakerState.HALF_OPEN and self._trial_taken)

    def settled(self, outcome: Outcome) -> None:
        """Tell the breaker how an event went (only a handler's run counts)."""
        breaker = self.breaker
        if breaker is None:
            return
        if outcome.handler_seconds is None:  # not a try of the handler: another may try
            if breaker.state is BreakerState.HALF_OPEN and self._trial_taken:
                self._trial_taken = False
                self._changed_state()
            return
        if outcome.kind in ("retried", "parked") and not outcome.gave_up:
            breaker.failed()
        else:
            breaker.succeeded()


def hold_for(
    spec: ConsumerSpec, settings: Settings, metrics: ConsumerMetrics | None, concurrency: int
) -> Hold:
    """The hold of a consumer as declared: its breaker and rate limit, if any."""
    limiter = build_limiter(settings, spec.name, spec.rate_limit) if spec.rate_limit else None
    hold = Hold(spec.name, concurrency, limiter=limiter, metrics=metrics)
    if spec.breaker is not None:
        hold.breaker = CircuitBreaker(spec.breaker, hold.breaker_moved)
    if metrics is not None:
        metrics.paused.set(0)
        metrics.breaker_state.set(0)
    return hold
