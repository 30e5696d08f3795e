"""A consumer's rate limit: at most ``rate`` events a second reach its handler.

The budget is spent by reservation (the generic cell rate algorithm): each event takes the
next free instant, ``1 / rate`` seconds after the one before, and waits for it before its
handler runs. Waiting is never a failure and never an attempt. With a Redis URL the instants
are kept in Redis, so every worker replica spends one shared budget (``global``); without, in
the process (``process``: each replica its own).
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal, Protocol

from shared.settings import Settings

__all__ = ["LocalRate", "RateLimiter", "RedisRate", "Scope", "build_limiter"]

Scope = Literal["global", "process"]


class RateLimiter(Protocol):
    rate: float
    scope: Scope

    async def wait(self) -> None:
        """Return when the next event may reach the handler."""
        ...

    async def close(self) -> None: ...


class LocalRate:
    """One process's budget."""

    scope: Scope = "process"

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._interval = 1.0 / rate
        self._next = 0.0  # the next free instant (monotonic)

    async def wait(self) -> None:
        now = time.monotonic()
        at = max(self._next, now)
        self._next = at + self._interval
        if at > now:
            await asyncio.sleep(at - now)

    async def close(self) -> None:
        return None


# KEYS[1]: the next free instant (ms, Redis's clock); ARGV[1]: the interval (ms).
# Returns how many ms to wait for the instant reserved.
_RESERVE = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local interval = tonumber(ARGV[1])
local at = tonumber(redis.call('GET', KEYS[1]) or '0')
if at < now then at = now end
redis.call('SET', KEYS[1], at + interval, 'PX', math.ceil(interval) + 60000)
return at - now
"""


class RedisRate:
    """One budget for every replica, its instants in Redis (one round trip per event)."""

    scope: Scope = "global"

    def __init__(self, url: str, key: str, rate: float) -> None:
        import redis.asyncio as redis

        self.rate = rate
        self._redis = redis.Redis.from_url(url)
        self._key = key
        self._interval_ms = 1000.0 / rate
        self._script = self._redis.register_script(_RESERVE)

    async def wait(self) -> None:
        waited = await self._script(keys=[self._key], args=[self._interval_ms])
        if int(waited) > 0:
            await asyncio.sleep(int(waited) / 1000.0)

    async def close(self) -> None:
        await self._redis.aclose()


def build_limiter(settings: Settings, consumer: str, rate: float) -> RateLimiter:
    """Global (Redis, when ``redis_url`` is set) or per process."""
    if settings.redis_url is not None:
        key = f"{settings.prefix}:rate:{consumer}"
        return RedisRate(settings.redis_url.get_secret_value(), key, rate)
    return LocalRate(rate)
