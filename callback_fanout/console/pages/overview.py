"""``/``: the `status` table, intake and delivery over the last 15 minutes, the roles and
the consumers; its live part (``/overview/live``) refreshes every few seconds."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from callback_fanout.console.sampler import holds_of
from callback_fanout.console.web import OPS, SAMPLER, page

routes = web.RouteTableDef()

#: Seconds between two refreshes of the overview's live part.
REFRESH_SECONDS = 3


async def _live(request: web.Request) -> dict[str, Any]:
    ops, sampler = request.app[OPS], request.app[SAMPLER]
    consumers = await sampler.consumer_views()
    status = await ops.status(holds_of(consumers))
    return {
        "status": status,
        "consumers": consumers,
        "intake": sampler.intake(),
        "delivered": sampler.delivered(),
        "role_metrics": sampler.has_role_metrics,
        "refresh": REFRESH_SECONDS,
    }


@routes.get("/")
async def overview(request: web.Request) -> web.Response:
    return page(request, "overview.html", title="Overview", **await _live(request))


@routes.get("/overview/live")
async def overview_live(request: web.Request) -> web.Response:
    return page(request, "_overview_live.html", **await _live(request))
