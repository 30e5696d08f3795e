"""Concurrent callbacks against an ingress, every answer recorded with its time."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

__all__ = ["Answer", "Load"]


@dataclass(frozen=True)
class Answer:
    at: float  # monotonic time the answer came
    took: float  # seconds from request to answer
    status: int  # 0: no answer (connection error or client timeout)
    request_id: str | None
    retry_after: str | None


@dataclass
class Load:
    """``senders`` coroutines posting one body after the other until :meth:`stop`."""

    url: str
    bodies: list[bytes]
    senders: int = 32
    pause: float = 0.02  # between two posts of one sender: bounded traffic
    client_timeout: float = 10.0
    answers: list[Answer] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, http: aiohttp.ClientSession) -> None:
        self._tasks = [asyncio.create_task(self._send(http, i)) for i in range(self.senders)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _send(self, http: aiohttp.ClientSession, sender: int) -> None:
        n = sender
        timeout = aiohttp.ClientTimeout(total=self.client_timeout)
        while not self._stop.is_set():
            body = self.bodies[n % len(self.bodies)]
            n += self.senders
            start = time.monotonic()
            try:
                async with http.post(
                    self.url,
                    data=body,
                    headers={"Content-Type": "application/xml"},
                    timeout=timeout,
                ) as response:
                    await response.read()
                    answer = Answer(
                        time.monotonic(),
                        time.monotonic() - start,
                        response.status,
                        response.headers.get("X-Request-Id"),
                        response.headers.get("Retry-After"),
                    )
            except (aiohttp.ClientError, TimeoutError):
                answer = Answer(time.monotonic(), time.monotonic() - start, 0, None, None)
            self.answers.append(answer)
            await asyncio.sleep(self.pause)

    # -- what happened ---------------------------------------------------------------

    @property
    def accepted(self) -> list[str]:
        """The request ids of the 200s (each must be delivered or parked)."""
        return [a.request_id for a in self.answers if a.status == 200 and a.request_id]

    @property
    def unidentified(self) -> int:
        """200s without an X-Request-Id: accepted bodies the accounting cannot follow, so
        each counts as lost."""
        return sum(1 for a in self.answers if a.status == 200 and not a.request_id)

    def count(self, status: int) -> int:
        return sum(1 for a in self.answers if a.status == status)

    def longest_refusal(self) -> float:
        """Longest stretch (s) from a refused answer to the next 200, answers in time order."""
        longest = 0.0
        since: float | None = None
        for answer in sorted(self.answers, key=lambda a: a.at):
            if answer.status == 200:
                if since is not None:
                    longest = max(longest, answer.at - since)
                since = None
            elif since is None:
                since = answer.at - answer.took  # the request that got it was sent then
        if since is not None:
            longest = max(longest, time.monotonic() - since)
        return longest

    def slowest(self) -> float:
        return max((a.took for a in self.answers), default=0.0)
