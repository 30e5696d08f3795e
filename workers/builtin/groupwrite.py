"""Group commit for consumers: many handlers wait on one write.

Each handler hands its item to :meth:`Batcher.submit` and waits. A batch is written by one
call of ``write(items)``; every handler in it then returns (so the runtime acks its message)
or raises the write's error (so the runtime retries it). ``write`` may instead return one
outcome per item (``None`` for written, or the exception that handler raises), when only
some items failed. Nothing is acknowledged before the write that holds it has completed.

When a batch is written: as soon as it holds ``max_size`` items, or ``max_wait`` seconds
after its first item, provided fewer than ``max_writers`` writes are in progress; otherwise
when one of them completes. Under load the items arriving during a write form the next
batch, so batches grow with the load (up to ``max_size``) and a quiet consumer still writes
each item within ``max_wait``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Batcher", "Outcomes"]

T = TypeVar("T")

#: What a write returns: ``None`` when every item was written, else one outcome per item.
Outcomes = Sequence[Exception | None] | None


class Batcher(Generic[T]):
    """Collects items into batches and writes each batch with one call."""

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[Outcomes]],
        *,
        max_size: int,
        max_wait: float,
        max_writers: int = 1,
    ) -> None:
        if max_size < 1 or max_wait < 0 or max_writers < 1:
            raise ValueError("max_size and max_writers must be >= 1, max_wait >= 0")
        self._write = write
        self.max_size = max_size
        self.max_wait = max_wait
        self.max_writers = max_writers
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._due = False  # the oldest pending item has waited max_wait
        self._writing: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> None:
        """Return once a write holding ``item`` has completed; raise its error if it failed."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._items.append(item)
        self._waiters.append(waiter)
        if len(self._items) >= self.max_size:
            self._flush()
        elif self._timer is None and not self._due:
            self._timer = asyncio.get_running_loop().call_later(self.max_wait, self._expire)
        await waiter  # cancelling a handler cancels its waiter only: the batch is written

    def _expire(self) -> None:
        self._timer = None
        self._due = True
        self._flush()

    def _flush(self, *, force: bool = False) -> None:
        """Start writing the pending items if they are due and a writer is free."""
        while self._items and (
            force
            or (
                len(self._writing) < self.max_writers
                and (self._due or len(self._items) >= self.max_size)
            )
        ):
            items, self._items = self._items[: self.max_size], self._items[self.max_size :]
            waiters, self._waiters = (
                self._waiters[: self.max_size],
                self._waiters[self.max_size :],
            )
            task = asyncio.create_task(self._run(items, waiters))
            self._writing.add(task)
            task.add_done_callback(self._written)
            self._due = False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if self._items and self._timer is None and not self._due:
            self._timer = asyncio.get_running_loop().call_later(self.max_wait, self._expire)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writing.discard(task)
        self._flush()

    async def _run(self, items: list[T], waiters: list[asyncio.Future[None]]) -> None:
        try:
            outcomes = await self._write(items)
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(error)
            if not isinstance(exc, Exception):
                raise
        else:
            for waiter, outcome in zip(waiters, outcomes or [None] * len(waiters), strict=True):
                if waiter.done():
                    continue
                if outcome is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(outcome)

    async def close(self) -> None:
        """Write what is pending and wait for every write in progress."""
        self._flush(force=True)
        while self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)
