"""The RabbitMQ management HTTP API, optional: what AMQP alone cannot tell.

AMQP's ``queue.declare-ok`` carries only the ready messages and the consumers of one named
queue. The management plugin adds the unacknowledged messages, the publish and ack rates it
measures itself (over its statistics interval, 5 s by default: counters read over a shorter
window would jump in steps), and the list of queues, so `status` also finds consumer queues
it was not told about. When it does not answer, `status` works without it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiohttp

from shared.settings import Settings, mask_url

__all__ = ["Management", "QueueStats", "management_for"]

#: The port the management plugin listens on unless configured otherwise.
MANAGEMENT_PORT = 15672


@dataclass(frozen=True)
class QueueStats:
    """One queue as the management API sees it."""

    name: str
    ready: int
    unacked: int
    consumers: int
    in_per_s: float | None  # messages published to the queue per second; None: no figure yet
    out_per_s: float | None  # messages acknowledged per second

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> QueueStats:
        stats = item.get("message_stats") or {}
        return cls(
            name=str(item["name"]),
            ready=int(item.get("messages_ready") or 0),
            unacked=int(item.get("messages_unacknowledged") or 0),
            consumers=int(item.get("consumers") or 0),
            in_per_s=_rate(stats.get("publish_details")),
            out_per_s=_rate(stats.get("ack_details")),
        )


def _rate(details: object) -> float | None:
    rate = details.get("rate") if isinstance(details, dict) else None
    if isinstance(rate, int | float) and not isinstance(rate, bool):
        return round(float(rate), 1)
    return None


@dataclass(frozen=True)
class Management:
    """A client of one broker's management API, for one virtual host."""

    url: str  # http(s)://[user:password@]host:port/
    vhost: str
    timeout: float = 2.0

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    async def queues(self, prefix: str) -> dict[str, QueueStats] | None:
        """Every queue whose name starts with ``prefix.``; None when the API does not answer."""
        parts = urlsplit(self.url)
        credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        auth = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        endpoint = f"{base}/api/queues/{quote(self.vhost, safe='')}"
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(endpoint, headers=auth) as response,
            ):
                if response.status != 200:
                    return None
                items = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        if not isinstance(items, list):
            return None
        wanted = f"{prefix}."
        return {
            stats.name: stats
            for stats in (QueueStats.from_api(i) for i in items if isinstance(i, dict))
            if stats.name.startswith(wanted)
        }


def management_for(settings: Settings) -> Management | None:
    """The management API the settings point at (``auto``: the broker's host), or None."""
    chosen = settings.management_url.get_secret_value()
    if chosen == "off":
        return None
    broker = urlsplit(settings.broker_url)
    vhost = unquote(broker.path[1:]) if len(broker.path) > 1 else "/"
    if chosen != "auto":
        return Management(chosen, vhost)
    scheme = "https" if broker.scheme == "amqps" else "http"
    user = unquote(broker.username or "guest")
    password = unquote(broker.password or "guest")
    host = broker.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    url = f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{MANAGEMENT_PORT}/"
    return Management(url, vhost)
