"""Load as real senders make it: many callbacks in flight at once, each answered 200 or 503."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

__all__ = ["Senders"]

Post = Callable[[bytes], Awaitable[aiohttp.ClientResponse]]


@dataclass
class Senders:
    """``count`` senders posting ``body_of(n)`` (n = 0, 1, 2 ...) until stopped, each posting
    its next callback as soon as the last one is answered; a 503 makes it wait ``backoff``.

    ``accepted`` holds the request id of every 200, ``refused`` counts the 503s (each must
    carry ``Retry-After``); any other answer or a broken connection is kept in
    ``unexpected`` for the test to assert on.
    """

    post: Post
    body_of: Callable[[int], bytes]
    count: int = 32
    backoff: float = 0.25
    accepted: list[str] = field(default_factory=list)
    refused: int = 0
    unexpected: list[str] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=itertools.count)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _in_flight: int = 0
    max_in_flight: int = 0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._send()) for _ in range(self.count)]

    async def stop(self) -> None:
        """Stop sending; return once every request in flight is answered."""
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def until_accepted(self, n: int, timeout: float = 30) -> None:  # noqa: ASYNC109
        """Wait until ``n`` callbacks in all have been accepted."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.accepted) < n:
            if loop.time() > deadline:
                raise AssertionError(
                    f"{len(self.accepted)} callbacks accepted in {timeout} s, not {n} "
                    f"({self.refused} refused, unexpected: {self.unexpected[:3]})"
                )
            await asyncio.sleep(0.02)

    async def _send(self) -> None:
        while not self._stop.is_set():
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            try:
                response = await self.post(self.body_of(next(self._numbers)))
            except aiohttp.ClientError as exc:
                self.unexpected.append(repr(exc))
                await asyncio.sleep(self.backoff)
                continue
            finally:
                self._in_flight -= 1
            if response.status == 200:
                self.accepted.append(response.headers["X-Request-Id"])
            elif response.status == 503 and response.headers.get("Retry-After"):
                self.refused += 1
                await asyncio.sleep(self.backoff)
            else:
                self.unexpected.append(f"HTTP {response.status}")
