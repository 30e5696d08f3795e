"""Group commit for consumers: many handlers wait on one write.

Each handler hands its item to :meth:`Batcher.submit` and waits. The batch is written when
it holds ``max_size`` items or ``max_wait`` seconds after its first item, by one call of
``write(items)``; every handler in it then returns (so the runtime acks its message) or
raises the write's error (so the runtime retries it). Nothing is acknowledged before the
write that holds it has completed. Batches write concurrently with the next one filling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")


class Batcher(Generic[T]):
    """Collects items into batches and writes each batch with one call."""

    def __init__(
        self, write: Callable[[list[T]], Awaitable[None]], *, max_size: int, max_wait: float
    ) -> None:
        if max_size < 1 or max_wait < 0:
            raise ValueError("max_size must be >= 1 and max_wait >= 0")
        self._write = write
        self.max_size = max_size
        self.max_wait = max_wait
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writing: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> None:
        """Return once a write holding ``item`` has completed; raise its error if it failed."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._items.append(item)
        self._waiters.append(waiter)
        if len(self._items) >= self.max_size:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_wait, self._flush)
        await asyncio.shield(waiter)  # a cancelled handler leaves its batch-mates alone

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._items:
            return
        items, waiters = self._items, self._waiters
        self._items, self._waiters = [], []
        task = asyncio.create_task(self._run(items, waiters))
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _run(self, items: list[T], waiters: list[asyncio.Future[None]]) -> None:
        try:
            await self._write(items)
        except BaseException as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
                    waiter.exception()  # retrieved: a cancelled handler's waiter is not an error
            if not isinstance(exc, Exception):
                raise
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def close(self) -> None:
        """Write what is pending and wait for every write in progress."""
        self._flush()
        if self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)
