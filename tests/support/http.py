"""Asking a role's HTTP endpoints from a test."""

from __future__ import annotations

import aiohttp

__all__ = ["status_of"]


async def status_of(http: aiohttp.ClientSession, url: str) -> int:
    """The status a GET of ``url`` answers, or 0 when nothing answers."""
    try:
        async with http.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return 0
