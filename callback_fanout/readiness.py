"""The ``/readyz`` answers of role admin ports, for `status --url`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from shared.errors import ConfigError

__all__ = ["RoleReadiness", "check_readiness", "readyz_url"]


@dataclass(frozen=True)
class RoleReadiness:
    """What one role's admin port answered on ``/readyz``."""

    url: str
    ready: bool
    status: int | None  # HTTP status; None when nothing answered
    detail: Any  # the JSON it answered, or the error

    @property
    def blocked(self) -> dict[str, str]:
        """The roles behind this admin port whose broker connection RabbitMQ blocks (a
        memory or disk alarm), with the broker's reason: ``{"ingress": "low on memory"}``."""
        roles = self.detail.get("roles") if isinstance(self.detail, dict) else None
        if not isinstance(roles, dict):
            return {}
        return {
            str(name): str(facts["broker_blocked"])
            for name, facts in roles.items()
            if isinstance(facts, dict) and facts.get("broker_blocked")
        }

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "ready": self.ready, "status": self.status, "detail": self.detail}


def readyz_url(url: str) -> str:
    """``http://host:port`` (or a full ``.../readyz`` URL) as the ``/readyz`` URL to ask."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--url {url!r}: expected an admin port URL like http://127.0.0.1:9100")
    if parts.path.rstrip("/").endswith("/readyz"):
        return url
    return url.rstrip("/") + "/readyz"


async def _ask(session: aiohttp.ClientSession, url: str) -> RoleReadiness:
    try:
        async with session.get(url) as response:
            text = await response.text()
            try:
                detail: Any = await response.json(content_type=None)
            except ValueError:
                detail = text[:200]
            return RoleReadiness(url, response.status == 200, response.status, detail)
    except aiohttp.ClientConnectorError:
        return RoleReadiness(url, False, None, "no answer: cannot connect")
    except TimeoutError:
        return RoleReadiness(url, False, None, "no answer: timed out")
    except aiohttp.ClientError as exc:
        return RoleReadiness(url, False, None, f"no answer: {exc or type(exc).__name__}")


async def check_readiness(urls: Sequence[str], seconds: float = 2.0) -> list[RoleReadiness]:
    """Ask every URL at once; a role that does not answer within ``seconds`` is not ready."""
    if not urls:
        return []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session:
        return list(await asyncio.gather(*(_ask(session, url) for url in urls)))
