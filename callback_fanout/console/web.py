"""The console's aiohttp application: the pages, the login in front of them, and the headers
that keep a hostile callback body inert (a Content-Security-Policy without inline scripts,
every text escaped by the templates)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aio_pika
import jinja2
from aiohttp import web
from markupsafe import Markup

from callback_fanout.console.auth import LOGIN_COOKIE, SESSION_COOKIE, Session, Sessions
from callback_fanout.console.charts import sparkline
from callback_fanout.console.operations import Operations
from callback_fanout.console.sampler import Sampler
from callback_fanout.tables import role_answer, row_state, short_name
from shared.errors import ConfigError, FanoutError
from shared.metrics import CONTENT_TYPE, Metrics, render
from shared.settings import mask_url

__all__ = [
    "CSP",
    "METRICS",
    "OPS",
    "SAMPLER",
    "SESSIONS",
    "WINDOW",
    "current",
    "environment",
    "make_app",
    "page",
    "redirect",
    "require_csrf",
    "wider",
    "window_of",
]

OPS = web.AppKey("ops", Operations)
SESSIONS = web.AppKey("sessions", Sessions)
SAMPLER = web.AppKey("sampler", Sampler)
METRICS = web.AppKey("metrics", Metrics)
_TEMPLATES = web.AppKey("templates", jinja2.Environment)
_SESSION = web.RequestKey("session", Session)

#: No inline script or style, nothing from elsewhere, no framing, forms post here only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: Seconds a page may take before it says the broker did not answer.
PAGE_SECONDS = 10.0
#: Paths served without a session.
_PUBLIC = ("/login", "/static/", "/healthz", "/metrics")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def environment() -> jinja2.Environment:
    """The pages' templates, escaping everything, with the console's filters."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("callback_fanout.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["age"] = _age
    env.filters["when"] = _when
    env.filters["clock"] = _clock
    env.filters["number"] = _number
    env.filters["rate"] = _rate
    env.filters["seconds"] = _seconds
    env.filters["pretty"] = _pretty
    env.filters["masked"] = mask_url
    env.filters["q"] = lambda text: quote(str(text), safe="")
    env.globals["sparkline"] = sparkline
    env.globals["row_state"] = row_state
    env.globals["role_answer"] = role_answer
    env.globals["short_name"] = short_name
    env.globals["query"] = lambda **kw: urlencode({k: v for k, v in kw.items() if v})
    return env


def make_app(
    ops: Operations, sessions: Sessions, sampler: Sampler, metrics: Metrics
) -> web.Application:
    from callback_fanout.console.pages import consumers, login, overview, parked, replay, trace

    app = web.Application(middlewares=[_headers, _errors, _signed_in])
    app[OPS] = ops
    app[SESSIONS] = sessions
    app[SAMPLER] = sampler
    app[METRICS] = metrics
    app[_TEMPLATES] = environment()
    for module in (login, overview, consumers, parked, trace, replay):
        app.add_routes(module.routes)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    static = Path(str(files("callback_fanout.console").joinpath("static")))
    app.router.add_static("/static/", static, show_index=False, follow_symlinks=False)
    return app


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _metrics(request: web.Request) -> web.Response:
    body = render(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


# -- middlewares ------------------------------------------------------------------------------


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    if isinstance(response, web.HTTPException) and response.status >= 300:
        raise response
    return response


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What the broker or a database refused, said on a page of its own (the operator reads
    the message; nothing is hidden behind a 500)."""
    try:
        if request.method != "GET":  # an action may take long (a replay at a set rate)
            return await handler(request)
        async with asyncio.timeout(PAGE_SECONDS):  # a page never hangs on a broker away
            return await handler(request)
    except FanoutError as exc:
        return page(
            request, "error.html", http_status=_status_of(exc), title="Error", error=str(exc)
        )
    except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError) as exc:
        error = f"the broker did not answer ({type(exc).__name__}); try again in a moment"
        return page(request, "error.html", http_status=503, title="Error", error=error)


def _status_of(exc: FanoutError) -> int:
    return 400 if isinstance(exc, ConfigError) else 503


@web.middleware
async def _signed_in(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every page needs a session (issued at once when the console is open); a request that
    is not a page (a fragment's refresh, a POST) without one gets 401/403, not a login page."""
    if request.path.startswith(_PUBLIC):
        return await handler(request)
    sessions = request.app[SESSIONS]
    session = sessions.session(request.cookies.get(SESSION_COOKIE))
    issued = None
    if session is None and sessions.open:
        session, issued = sessions.issue(sessions.names[0])
    if session is None:
        if request.method != "GET":
            raise web.HTTPForbidden(text="not signed in")
        if request.headers.get("HX-Request"):
            raise web.HTTPUnauthorized(text="not signed in", headers={"HX-Redirect": "/login"})
        raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
    request[_SESSION] = session
    response = await handler(request)
    if issued is not None:
        set_session_cookie(response, issued, session, request.secure)
    return response


def set_session_cookie(
    response: web.StreamResponse, value: str, session: Session, secure: bool
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=max(0, int(session.expires - time.time())),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=secure,
    )


def set_login_cookie(response: web.StreamResponse, nonce: str, secure: bool) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="Strict",
        secure=secure,
    )


# -- what the pages use -----------------------------------------------------------------------


def current(request: web.Request) -> Session:
    return request[_SESSION]


async def require_csrf(request: web.Request) -> dict[str, str]:
    """The posted form, once its CSRF token is the session's (403 otherwise)."""
    form = await request.post()
    presented = form.get("csrf")
    session = current(request)
    if not isinstance(presented, str) or not request.app[SESSIONS].csrf_ok(session, presented):
        request.app[OPS].count("csrf", "refused")
        raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page and try again")
    return {k: v for k, v in form.items() if isinstance(v, str)}


def page(
    request: web.Request, template: str, *, http_status: int = 200, **context: Any
) -> web.Response:
    """A template rendered as a page (or a fragment: templates starting with ``_``)."""
    session = request.get(_SESSION)
    sessions = request.app[SESSIONS]
    context.setdefault("title", "")
    html = (
        request.app[_TEMPLATES]
        .get_template(template)
        .render(
            request=request,
            path=request.path,
            operator=session.operator if session is not None else None,
            csrf=sessions.csrf(session) if session is not None else "",
            open_console=sessions.open,
            said=request.query.get("said"),
            **context,
        )
    )
    return web.Response(text=html, content_type="text/html", charset="utf-8", status=http_status)


#: Messages a page looks at in a queue unless asked for more (``?window=N``, up to
#: :data:`MAX_WINDOW`): a page reads a bounded window, never the whole queue, and 200
#: messages read in well under 200 ms even with thousands parked (docs/bench.md).
WINDOW = 200
MAX_WINDOW = 10_000


def window_of(request: web.Request) -> int:
    """The window a page was asked to look at (``?window=N``), else :data:`WINDOW`."""
    text = request.query.get("window", "")
    if not text.isdigit():
        return WINDOW
    return max(1, min(int(text), MAX_WINDOW))


def wider(window: int) -> int:
    """The window a page's "look further" link asks for: five times as many messages."""
    return min(window * 5, MAX_WINDOW)


def redirect(location: str, said: str | None = None) -> web.HTTPSeeOther:
    """After a POST: back to a page (POST/redirect/GET), with what was done to say there."""
    if said is not None:
        location += ("&" if "?" in location else "?") + urlencode({"said": said})
    return web.HTTPSeeOther(location)


# -- filters ----------------------------------------------------------------------------------


def _age(value: datetime | float | None) -> str:
    if value is None:
        return "-"
    then = value.timestamp() if isinstance(value, datetime) else value
    seconds = max(0.0, time.time() - then)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _when(value: datetime | float | str | None) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(value, UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clock(value: str | None) -> str:
    """An ISO time as a timeline shows it, to the millisecond (its column says UTC)."""
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _number(value: int | float | None) -> str:
    return "-" if value is None else f"{value:,}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}/s"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"


def _pretty(value: object) -> Markup | str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
