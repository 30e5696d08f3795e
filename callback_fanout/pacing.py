"""A set pace for the commands that send messages again (``replay``, ``parked replay``)."""

from __future__ import annotations

import argparse
import asyncio

__all__ = ["Pace", "rate_flag"]


class Pace:
    """At most ``rate`` sends a second: the n-th send (from 0) waits until n / ``rate``
    seconds after the first, so a pause (a slow confirm) is not made up with a burst larger
    than the time it lost. ``rate`` None: no waiting at all."""

    def __init__(self, rate: float | None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("a rate is a number of messages a second above 0")
        self.rate = rate
        self._sent = 0
        self._start: float | None = None

    async def wait(self) -> None:
        """Wait for the next send's turn."""
        if self.rate is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None:
            self._start = now
        due = self._start + self._sent / self.rate
        self._sent += 1
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 1.0:  # fell behind by more than a second: pace again from now
            self._start, self._sent = now, 1


def rate_flag(text: str) -> float:
    """``--rate N``: messages a second, a number above 0."""
    try:
        rate = float(text)
    except ValueError:
        rate = 0.0
    if not rate > 0 or rate == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of messages a second above 0")
    return rate
