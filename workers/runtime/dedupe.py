"""Opt-in duplicate dropping per consumer, on the event's idempotency key.

A key moves through two states: ``processing`` (claimed by one handler, for at most the
handler timeout) and ``done`` (handled, remembered for the dedupe window). A duplicate that
finds ``done`` is dropped; one that finds ``processing`` is retried later (the first one may
still fail); a failed handler releases its claim so the retry can run.

Two stores: Redis, shared by every worker replica (``redis_url``), and an in-process one for a
single process.
"""

from __future__ import annotations

import enum
import time
from typing import Protocol

from shared.settings import Settings

__all__ = ["Claim", "DedupeStore", "MemoryDedupeStore", "RedisDedupeStore", "build_store"]


class Claim(enum.Enum):
    """The outcome of claiming a key."""

    FIRST = "first"  # nobody handled it: handle it now
    DONE = "done"  # already handled within the window: drop it
    BUSY = "busy"  # another handler has it right now: try again later


class DedupeStore(Protocol):
    async def claim(self, key: str, hold: float) -> Claim:
        """Claim ``key`` for ``hold`` seconds (the handler's timeout)."""
        ...

    async def done(self, key: str, window: float) -> None:
        """Remember ``key`` as handled for ``window`` seconds."""
        ...

    async def release(self, key: str) -> None:
        """Forget a claim whose handler failed, so a retry can handle it."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryDedupeStore:
    """One process only: a dict with expiry times, pruned as it grows."""

    def __init__(self, max_keys: int = 1_000_000) -> None:
        self._keys: dict[str, tuple[str, float]] = {}
        self._max_keys = max_keys

    def _get(self, key: str) -> str | None:
        entry = self._keys.get(key)
        if entry is None:
            return None
        state, expires = entry
        if expires < time.monotonic():
            del self._keys[key]
            return None
        return state

    def _prune(self) -> None:
        if len(self._keys) < self._max_keys:
            return
        now = time.monotonic()
        for key in [k for k, (_, exp) in self._keys.items() if exp < now]:
            del self._keys[key]
        while len(self._keys) >= self._max_keys:  # still full: forget the oldest
            del self._keys[next(iter(self._keys))]

    async def claim(self, key: str, hold: float) -> Claim:
        state = self._get(key)
        if state == "done":
            return Claim.DONE
        if state == "processing":
            return Claim.BUSY
        self._prune()
        self._keys[key] = ("processing", time.monotonic() + hold)
        return Claim.FIRST

    async def done(self, key: str, window: float) -> None:
        self._keys.pop(key, None)
        self._keys[key] = ("done", time.monotonic() + window)

    async def release(self, key: str) -> None:
        if self._get(key) == "processing":
            del self._keys[key]

    async def close(self) -> None:
        self._keys.clear()


class RedisDedupeStore:
    """Shared by all worker replicas: ``SET NX PX`` claims, ``done`` markers with a TTL."""

    def __init__(self, url: str, namespace: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(url)
        self._ns = namespace

    def _key(self, key: str) -> str:
        return f"{self._ns}:{key}"

    async def claim(self, key: str, hold: float) -> Claim:
        full = self._key(key)
        if await self._redis.set(full, b"processing", nx=True, px=max(1, round(hold * 1000))):
            return Claim.FIRST
        state = await self._redis.get(full)
        if state == b"done":
            return Claim.DONE
        if state is None:  # expired between the two calls: try once more
            return await self.claim(key, hold)
        return Claim.BUSY

    async def done(self, key: str, window: float) -> None:
        await self._redis.set(self._key(key), b"done", px=max(1, round(window * 1000)))

    async def release(self, key: str) -> None:
        full = self._key(key)
        if await self._redis.get(full) == b"processing":
            await self._redis.delete(full)

    async def close(self) -> None:
        await self._redis.aclose()


def build_store(settings: Settings) -> DedupeStore:
    """Redis when ``redis_url`` is set (shared by replicas), else in-process."""
    if settings.redis_url is not None:
        return RedisDedupeStore(settings.redis_url.get_secret_value(), f"{settings.prefix}:dedupe")
    return MemoryDedupeStore()
