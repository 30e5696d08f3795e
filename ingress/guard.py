"""The gate in front of the callback handler: client network, rate limit, token.

The callback handler asks :meth:`Guard.admit` first, before any body is read; it checks, in
this order:

1. the client's address (through trusted proxies only) must be in the allowed networks: 403;
2. the client must be within its rate limit: 429 with ``Retry-After``;
3. the request must present a valid token: 404, the very answer an unknown path gets, so a
   wrong token learns nothing (the URL is the secret).

Every refusal is counted by reason and logged without the path or the token. The health
routes are never gated (load balancers probe them); unknown paths get aiohttp's 404 at once.
A call rather than a middleware: the callback route is the hot path, and with no policy
configured the guard costs one cached address lookup.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ingress.auth import TokenRegistry, presented_token
from ingress.clientnet import ClientResolver, IPAddress, Networks
from ingress.ratelimit import RateLimiter, client_key
from shared.logs import get_logger, mask_values
from shared.settings import Settings

__all__ = ["GUARD", "OPEN_ENDPOINT_WARNING", "Guard"]

log = get_logger("ingress.guard")

OPEN_ENDPOINT_WARNING = (
    "no callback token configured: anyone who can reach POST /callbacks can post "
    "(set --token NAME=SECRET or a token file)"
)


@dataclass
class Guard:
    """The policies of one ingress and the count of what they refused."""

    tokens: TokenRegistry
    resolver: ClientResolver
    allowed: Networks
    limiter: RateLimiter | None = None
    refused: Counter[str] = field(default_factory=Counter)

    @classmethod
    def from_settings(cls, settings: Settings) -> Guard:
        """The guard the settings describe; :class:`ConfigError` when they are invalid."""
        tokens = TokenRegistry.from_settings(settings)
        mask_values(*tokens.secrets())
        limiter = (
            RateLimiter(settings.rate_limit, settings.rate_burst, settings.rate_limit_clients)
            if settings.rate_limit > 0
            else None
        )
        return cls(
            tokens=tokens,
            resolver=ClientResolver(
                Networks(settings.trusted_proxies, "trusted_proxies"), settings.forwarded_header
            ),
            allowed=Networks(settings.allowed_networks, "allowed_networks"),
            limiter=limiter,
        )

    @property
    def warnings(self) -> list[str]:
        return [OPEN_ENDPOINT_WARNING] if self.tokens.open else []

    def admit(self, request: web.Request) -> tuple[IPAddress | None, str | None]:
        """The client's address and the presented token's name (None: open endpoint), or
        the refusal raised as an HTTP error (403, 429, 404), counted and logged."""
        client = self.resolver.client_of(request)
        if not self.allowed.allows(client):
            self.refuse("network", request, client)
            raise web.HTTPForbidden()
        if self.limiter is not None:
            wait = self.limiter.acquire(client_key(client))
            if wait > 0:
                retry_after = self.limiter.retry_after(wait)
                self.refuse("rate", request, client, retry_after=retry_after)
                raise web.HTTPTooManyRequests(headers={"Retry-After": retry_after})
        if self.tokens.open:
            return client, None
        name = self.tokens.match(presented_token(request))
        if name is None:
            self.refuse("token", request, client)
            raise web.HTTPNotFound()
        return client, name

    def refuse(
        self, reason: str, request: web.BaseRequest, client: IPAddress | None, **details: Any
    ) -> None:
        """Count and log one refused request (never its path, query or body)."""
        self.refused[reason] += 1
        log.info(
            "request refused",
            reason=reason,
            client=str(client) if client is not None else request.remote,
            method=request.method,
            **details,
        )

    def status(self) -> dict[str, Any]:
        """What the admin port's ``/readyz`` shows: the mode, the counts, the warnings; never a
        secret."""
        return {
            "auth": "open" if self.tokens.open else "token",
            "tokens": len(self.tokens.names),
            "allowlist": bool(self.allowed),
            "rate_limit": self.limiter is not None,
            "refused": dict(sorted(self.refused.items())),
            "warnings": self.warnings,
        }


GUARD = web.AppKey("guard", Guard)
