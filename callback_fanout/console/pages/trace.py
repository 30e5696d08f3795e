"""``/trace?q=<job id | request id | idempotency key>``: the timeline of `trace`, with a
link to the parked message where there is one, and its Replay."""

from __future__ import annotations

from aiohttp import web

from callback_fanout.console.web import OPS, page, wider, window_of

routes = web.RouteTableDef()


@routes.get("/trace")
async def trace(request: web.Request) -> web.Response:
    q = request.query.get("q", "").strip()
    if not q:
        return page(request, "trace.html", title="Trace", q="", found=None)
    window = window_of(request)
    found = await request.app[OPS].trace(q, window=window)
    return page(
        request,
        "trace.html",
        title=f"Trace {q}",
        q=q,
        found=found,
        window=window,
        wider=wider(window),
        cut=any("only the first" in note for note in found.notes),
    )
