"""``/login`` and ``/logout``: a named console token for a signed session cookie."""

from __future__ import annotations

from aiohttp import web

from callback_fanout.console.auth import LOGIN_COOKIE, SESSION_COOKIE
from callback_fanout.console.web import (
    OPS,
    SESSIONS,
    page,
    redirect,
    require_csrf,
    set_login_cookie,
    set_session_cookie,
)
from shared.logs import get_logger

routes = web.RouteTableDef()
log = get_logger("console")


def next_path(target: str | None) -> str:
    """Where to go after the login: a path of this console only (never another site)."""
    if not target or not target.startswith("/") or target[1:2] in ("/", "\\"):
        return "/"
    return target


@routes.get("/login")
async def login_form(request: web.Request) -> web.Response:
    sessions = request.app[SESSIONS]
    if sessions.open:
        raise redirect("/")
    # one pre-login token for every login form of this browser (several tabs, a reload)
    nonce = request.cookies.get(LOGIN_COOKIE) or sessions.login_nonce()
    target = next_path(request.query.get("next"))
    response = page(request, "login.html", title="Log in", nonce=nonce, next=target)
    set_login_cookie(response, nonce, request.secure)
    return response


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    sessions = request.app[SESSIONS]
    form = await request.post()
    token, presented, target = (form.get(k) for k in ("token", "csrf", "next"))
    target = next_path(target if isinstance(target, str) else None)
    ops = request.app[OPS]
    if not sessions.login_csrf_ok(
        request.cookies.get(LOGIN_COOKIE), presented if isinstance(presented, str) else None
    ):
        ops.count("login", "refused")
        raise web.HTTPForbidden(text="missing or wrong CSRF token: reload the page and try again")
    signed = sessions.login(token) if isinstance(token, str) else None
    if signed is None:
        ops.count("login", "refused")
        log.warning("console login refused", peer=request.remote)
        nonce = sessions.login_nonce()
        response = page(
            request,
            "login.html",
            # a form to try again, not an error of the page (the refusal is counted, logged)
            title="Log in",
            nonce=nonce,
            next=target,
            error="That token is not valid.",
        )
        set_login_cookie(response, nonce, request.secure)
        return response
    session, cookie = signed
    ops.count("login", "done")
    log.info("console login", operator=session.operator, peer=request.remote)
    response = web.HTTPSeeOther(target)
    set_session_cookie(response, cookie, session, request.secure)
    response.del_cookie(LOGIN_COOKIE, path="/login")
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    await require_csrf(request)
    response = web.HTTPSeeOther("/login" if not request.app[SESSIONS].open else "/")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response
