"""A consumer's circuit breaker, in one worker process: closed, open, half-open.

``failures`` handler failures in a row (an exception or a timeout; ``GiveUp`` is the
handler's own decision and does not count) open it: the worker stops taking the consumer's
events for ``cool_down`` seconds (the events not taken stay in its queue, their attempts
untouched). Then it is half-open: one event goes through; its success closes the breaker,
its failure opens it again for another cool-down.

The breaker only decides; :mod:`workers.runtime.holding` acts on its state.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable

from workers.consumer import Breaker

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(enum.IntEnum):
    """The states, numbered as the ``callback_fanout_consumer_breaker_state`` gauge shows them."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class CircuitBreaker:
    """The state of one consumer's breaker; ``on_change(old, new)`` on every transition."""

    def __init__(self, declared: Breaker, on_change: Callable[[BreakerState, BreakerState], None]):
        self.declared = declared
        self.state = BreakerState.CLOSED
        self._failures = 0  # in a row, while closed
        self._on_change = on_change
        self._timer: asyncio.TimerHandle | None = None

    def succeeded(self) -> None:
        self._failures = 0
        if self.state is BreakerState.HALF_OPEN:
            self._move(BreakerState.CLOSED)

    def failed(self) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self._open()
            return
        if self.state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.declared.failures:
                self._open()

    def _open(self) -> None:
        self._failures = 0
        self._move(BreakerState.OPEN)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.declared.cool_down, self._half_open)

    def _half_open(self) -> None:
        self._timer = None
        if self.state is BreakerState.OPEN:
            self._move(BreakerState.HALF_OPEN)

    def _move(self, new: BreakerState) -> None:
        old, self.state = self.state, new
        if old is not new:
            self._on_change(old, new)

    def close(self) -> None:
        """Forget the timer (the worker stops)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
