"""The aiohttp application: take a callback, make it durable, answer. Never parse."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ingress.body import BodyRefused, read_body
from ingress.clientnet import address_text
from ingress.groupcommit import Publisher, RawMeta
from ingress.guard import GUARD, Guard
from ingress.metrics import IngressMetrics, Outcome
from shared import otel
from shared.errors import BrokerUnavailable
from shared.logs import get_logger
from shared.settings import Settings
from shared.topology import Topology

__all__ = [
    "PUBLISHER",
    "SETTINGS",
    "STATE",
    "CallbackReceiver",
    "IngressState",
    "create_app",
    "taking_callbacks",
]

log = get_logger("ingress")

#: What serves a request.
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Request headers kept with the body because a parser may need them.
KEPT_HEADERS = ("Content-Type", "User-Agent", "X-Ci-Content-Version")

#: The outcome of a refusal the guard raises, by its status.
_REFUSED: dict[int, Outcome] = {
    403: "forbidden",
    404: "unauthorized",
    413: "too_large",
    429: "rate_limited",
}
#: The outcome of a body that could not be read, by its status.
_BODY_REFUSED: dict[int, Outcome] = {
    400: "bad_request",
    408: "timeout",
    413: "too_large",
    415: "unsupported_encoding",
}


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


class CallbackReceiver:
    """``POST /callbacks[/{token}]``: 200 once the body is durable; 503 + Retry-After otherwise.

    The hot path of the whole system: everything it needs is bound once, here. Each answer
    is counted by outcome in ``metrics`` (when given).
    """

    def __init__(
        self,
        settings: Settings,
        publisher: Publisher,
        state: IngressState,
        guard: Guard,
        metrics: IngressMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.state = state
        self.guard = guard
        self.metrics = metrics
        self._max_bytes = settings.max_body_bytes

    async def receive(self, request: web.Request) -> web.Response:
        metrics = self.metrics
        if metrics is None:
            return (await self._receive(request))[1]
        started = time.perf_counter()
        try:
            outcome, answer = await self._receive(request)
        except web.HTTPException as refused:  # the guard's 403/404/429, or 413 by length
            metrics.answered(_REFUSED.get(refused.status, "bad_request"), started)
            raise
        metrics.answered(outcome, started)
        return answer

    async def _receive(self, request: web.Request) -> tuple[Outcome, web.Response]:
        settings = self.settings
        if self.state.draining:
            return "unavailable", _unavailable(settings, "shutting down")
        client, token_name = self.guard.admit(request)  # 403/429/404 raised, before the body
        length = request.content_length
        if length is not None and length > self._max_bytes:
            self.guard.refuse("too_large", request, client)
            raise web.HTTPRequestEntityTooLarge(max_size=self._max_bytes, actual_size=length)
        try:
            if request.content.is_eof():  # all of it arrived with the head: nothing to wait for
                body = await read_body(request, self._max_bytes)
            else:
                async with asyncio.timeout(settings.body_timeout):
                    body = await read_body(request, self._max_bytes)
        except (TimeoutError, BodyRefused) as exc:
            refused = exc if isinstance(exc, BodyRefused) else BodyRefused(408, "slow_body", "")
            self.guard.refuse(refused.reason, request, client)
            answer = web.json_response(
                {"error": str(refused) or "request timeout"}, status=refused.status
            )
            answer.force_close()  # the rest of the body is not worth reading
            return _BODY_REFUSED.get(refused.status, "bad_request"), answer
        if not body:
            return "bad_request", web.json_response(
                {"error": "empty body", "reason": "a callback has a body"}, status=400
            )
        request_id = next_request_id()
        request_headers = request.headers
        content_type = request_headers.get("Content-Type")
        headers = {name: value for name in KEPT_HEADERS if (value := request_headers.get(name))}
        meta = RawMeta(
            request_id,
            time.time(),
            content_type,
            address_text(client) if client is not None else request.remote,
            headers,
            token_name,
        )
        try:
            durable = await self.publisher.publish(body, meta)
        except BrokerUnavailable as exc:
            log.warning(
                "callback refused: broker unavailable", request_id=request_id, error=str(exc)
            )
            return "unavailable", _unavailable(settings, "broker unavailable")
        if settings.log_bodies:
            log.debug("callback body", request_id=request_id, body=body.decode("utf-8", "replace"))
        log.debug("callback accepted", request_id=request_id, size=len(body))
        if self.metrics is not None:
            self.metrics.body_bytes.observe(len(body))
        return durable, web.Response(
            body=b'{"request_id": "%s"}' % request_id.encode(),
            headers={"Content-Type": "application/json", "X-Request-Id": request_id},
        )


async def healthz(_request: web.Request) -> web.Response:
    """``GET /healthz``: the process is alive."""
    return web.json_response({"status": "ok"})


def taking_callbacks(app: web.Application) -> bool:
    """A body posted now can be made durable (by the broker, or the spool), and the app is
    not draining."""
    return app[PUBLISHER].ready and not app[STATE].draining


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: taking callbacks (200) or not (503), and nothing else: who may post,
    and what was refused, is the admin port's to tell."""
    ready = taking_callbacks(request.app)
    return web.json_response({"ready": ready}, status=200 if ready else 503)


def create_app(
    settings: Settings, publisher: Publisher, metrics: IngressMetrics | None = None
) -> web.Application:
    """The ingress application, given its settings, a publisher, and where to count (none:
    nothing counted). It serves callbacks and health only: ``/metrics`` is on the admin port.

    Raises :class:`ConfigError` when the security settings are invalid (a bad token, CIDR
    or token file).
    """
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[PUBLISHER] = publisher
    app[STATE] = IngressState()
    app[GUARD] = Guard.from_settings(settings)
    receiver = CallbackReceiver(settings, publisher, app[STATE], app[GUARD], metrics)
    receive: Handler = receiver.receive
    if otel.STATE.on:  # spans, only when tracing is on (shared.otel)
        from ingress.otel import traced_receiver

        receive = traced_receiver(
            receiver, Topology(settings.prefix, settings.quorum_initial_group_size)
        )
    app.add_routes(
        [
            web.post("/callbacks", receive, name="callbacks"),
            web.post("/callbacks/{token}", receive, name="callbacks-token"),
            web.get("/healthz", healthz, name="healthz"),
            web.get("/readyz", readyz, name="readyz"),
        ]
    )
    return app
