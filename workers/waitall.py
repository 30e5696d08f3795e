"""Waiting for several awaitables that must all succeed: the router's confirms, the events
of one message in a worker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

__all__ = ["wait_all"]


async def wait_all(waiting: Sequence[Awaitable[None]]) -> None:
    """Wait for every one (none left running, none with an unretrieved error), then raise the
    first error; a single awaitable is awaited as it is, without a task."""
    if len(waiting) == 1:
        await waiting[0]
        return
    results = await asyncio.gather(*waiting, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
