"""The aiohttp application: take a callback, make it durable, answer. Never parse."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time

from aiohttp import web

from ingress.body import BodyRefused, read_body
from ingress.guard import CLIENT, GUARD, TOKEN_NAME, Guard, guard_middleware
from ingress.publisher import Publisher, RawMeta
from shared.errors import BrokerUnavailable
from shared.logs import get_logger
from shared.settings import Settings

__all__ = ["PUBLISHER", "SETTINGS", "STATE", "IngressState", "create_app"]

log = get_logger("ingress")

#: Request headers kept with the body because a parser may need them.
KEPT_HEADERS = ("Content-Type", "User-Agent", "X-Ci-Content-Version")


#: Request ids: 16 random hex digits per process, then a counter (no syscall per request,
#: unique across replicas and restarts).
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count()


def next_request_id() -> str:
    """A new request id: 32 hex digits, unique across processes."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


class IngressState:
    """Mutable run state of one ingress process."""

    def __init__(self) -> None:
        self.draining = False


SETTINGS = web.AppKey("settings", Settings)
PUBLISHER = web.AppKey("publisher", Publisher)
STATE = web.AppKey("state", IngressState)


def _unavailable(settings: Settings, reason: str) -> web.Response:
    return web.json_response(
        {"error": "unavailable", "reason": reason},
        status=503,
        headers={"Retry-After": str(settings.retry_after)},
    )


async def receive_callback(request: web.Request) -> web.Response:
    """``POST /callbacks[/{token}]``: 200 once the body is durable; 503 + Retry-After otherwise.

    The guard middleware has checked the client and the token before this runs.
    """
    app = request.app
    settings = app[SETTINGS]
    if app[STATE].draining:
        return _unavailable(settings, "shutting down")
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        app[GUARD].refuse("too_large", request)
        raise web.HTTPRequestEntityTooLarge(max_size=settings.max_body_bytes, actual_size=length)
    try:
        if request.content.is_eof():  # all of it arrived with the head: nothing to wait for
            body = await read_body(request, settings.max_body_bytes)
        else:
            async with asyncio.timeout(settings.body_timeout):
                body = await read_body(request, settings.max_body_bytes)
    except (TimeoutError, BodyRefused) as exc:
        refused = exc if isinstance(exc, BodyRefused) else BodyRefused(408, "slow_body", "")
        app[GUARD].refuse(refused.reason, request)
        answer = web.json_response(
            {"error": str(refused) or "request timeout"}, status=refused.status
        )
        answer.force_close()  # the rest of the body is not worth reading
        return answer
    if not body:
        return web.json_response(
            {"error": "empty body", "reason": "a callback has a body"}, status=400
        )
    request_id = next_request_id()
    headers = {name: value for name in KEPT_HEADERS if (value := request.headers.get(name))}
    client = request.get(CLIENT)
    meta = RawMeta(
        request_id=request_id,
        received_at=time.time(),
        content_type=request.headers.get("Content-Type"),
        source_address=str(client) if client is not None else request.remote,
        headers=headers,
        token_name=request.get(TOKEN_NAME),
    )
    try:
        await app[PUBLISHER].publish(body, meta)
    except BrokerUnavailable as exc:
        log.warning("callback refused: broker unavailable", request_id=request_id, error=str(exc))
        return _unavailable(settings, "broker unavailable")
    if settings.log_bodies:
        log.debug("callback body", request_id=request_id, body=body.decode("utf-8", "replace"))
    log.debug("callback accepted", request_id=request_id, size=len(body))
    return web.Response(
        body=b'{"request_id": "%s"}' % request_id.encode(),
        content_type="application/json",
        headers={"X-Request-Id": request_id},
    )


async def healthz(_request: web.Request) -> web.Response:
    """``GET /healthz``: the process is alive."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: the broker is connected and the topology declared."""
    app = request.app
    ready = app[PUBLISHER].ready and not app[STATE].draining
    body = {"status": "ready" if ready else "not ready", "broker": app[PUBLISHER].ready}
    body.update(app[GUARD].status())
    return web.json_response(body, status=200 if ready else 503)


ROUTES = [
    web.post("/callbacks", receive_callback, name="callbacks"),
    web.post("/callbacks/{token}", receive_callback, name="callbacks-token"),
    web.get("/healthz", healthz, name="healthz"),
    web.get("/readyz", readyz, name="readyz"),
]


def create_app(settings: Settings, publisher: Publisher) -> web.Application:
    """The ingress application, given its settings and a publisher.

    Raises :class:`ConfigError` when the security settings are invalid (a bad token, CIDR
    or token file).
    """
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[guard_middleware])
    app[SETTINGS] = settings
    app[PUBLISHER] = publisher
    app[STATE] = IngressState()
    app[GUARD] = Guard.from_settings(settings)
    app.add_routes(ROUTES)
    return app
