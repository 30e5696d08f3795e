"""The gate in front of the callback handler: client network, rate limit, token.

One aiohttp middleware applies, in this order and before any body is read:

1. the client's address (through trusted proxies only) must be in the allowed networks: 403;
2. the client must be within its rate limit: 429 with ``Retry-After``;
3. on the callback routes, the request must present a valid token: 404, the very answer an
   unknown path gets, so a wrong token learns nothing (the URL is the secret).

Every refusal is counted by reason and logged without the path or the token. The health
routes are never gated (load balancers probe them).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ingress.auth import TokenRegistry, presented_token
from ingress.clientnet import ClientResolver, IPAddress, Networks
from ingress.ratelimit import RateLimiter, client_key
from shared.logs import get_logger, mask_values
from shared.settings import Settings

__all__ = [
    "CALLBACK_ROUTES",
    "CLIENT",
    "GUARD",
    "OPEN_ENDPOINT_WARNING",
    "TOKEN_NAME",
    "UNGUARDED_ROUTES",
    "Guard",
    "guard_middleware",
]

log = get_logger("ingress.guard")

#: Route names that take callbacks (token checked) and that are never gated.
CALLBACK_ROUTES = frozenset({"callbacks", "callbacks-token"})
UNGUARDED_ROUTES = frozenset({"healthz", "readyz"})

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

    def refuse(self, reason: str, request: web.BaseRequest, **details: Any) -> None:
        """Count and log one refused request (never its path, query or body)."""
        self.refused[reason] += 1
        client = request.get(CLIENT)
        log.info(
            "request refused",
            reason=reason,
            client=str(client) if client is not None else request.remote,
            method=request.method,
            **details,
        )

    def status(self) -> dict[str, Any]:
        """What ``/readyz`` shows: the mode, the counts, the warnings; never a secret."""
        return {
            "auth": "open" if self.tokens.open else "token",
            "tokens": len(self.tokens.names),
            "allowlist": bool(self.allowed),
            "rate_limit": self.limiter is not None,
            "refused": dict(sorted(self.refused.items())),
            "warnings": self.warnings,
        }


GUARD = web.AppKey("guard", Guard)
#: The client address the guard resolved (None: unknown) and the matching token's name.
CLIENT: web.RequestKey[IPAddress | None] = web.RequestKey("client")
TOKEN_NAME: web.RequestKey[str | None] = web.RequestKey("token_name")


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse what the guard's policies refuse; pass the rest on."""
    route = request.match_info.route.name
    if route in UNGUARDED_ROUTES:
        return await handler(request)
    guard = request.app[GUARD]
    client = guard.resolver.client_of(request)
    request[CLIENT] = client
    if not guard.allowed.allows(client):
        guard.refuse("network", request)
        raise web.HTTPForbidden()
    if guard.limiter is not None:
        wait = guard.limiter.acquire(client_key(client))
        if wait > 0:
            retry_after = guard.limiter.retry_after(wait)
            guard.refuse("rate", request, retry_after=retry_after)
            raise web.HTTPTooManyRequests(headers={"Retry-After": retry_after})
    if route in CALLBACK_ROUTES:
        name = guard.tokens.match(presented_token(request))
        if name is None and not guard.tokens.open:
            guard.refuse("token", request)
            raise web.HTTPNotFound()
        request[TOKEN_NAME] = name
    return await handler(request)
