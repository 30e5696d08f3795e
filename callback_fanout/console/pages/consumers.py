"""``/consumers/<name>``: one consumer's queue, rates and policy, with Pause and Resume."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from callback_fanout.console.web import OPS, SAMPLER, current, page, redirect, require_csrf
from callback_fanout.when import parse_duration
from workers.runtime.retry import RetryPolicy

routes = web.RouteTableDef()


async def _view(request: web.Request, name: str) -> dict[str, Any]:
    ops, sampler = request.app[OPS], request.app[SAMPLER]
    views = {v.name: v for v in await sampler.consumer_views()}
    view = views.get(name)
    spec = ops.specs.get(name)
    if view is None and spec is None:
        raise web.HTTPNotFound(text=f"no consumer {name!r}")
    policy = None
    if spec is not None:
        retry = RetryPolicy.for_consumer(spec, ops.settings)
        policy = {
            "routes": spec.routes,
            "filter": spec.filter,
            "concurrency": spec.concurrency or ops.settings.concurrency,
            "max_attempts": retry.max_attempts,
            "delays": retry.delays,
            "timeout": spec.timeout or ops.settings.handler_timeout,
            "dedupe": spec.dedupe,
            "breaker": spec.breaker,
            "rate_limit": spec.rate_limit,
        }
    return {
        "name": name,
        "view": view,
        "policy": policy,
        "charts": [
            ("waiting", sampler.depth(name, "ready")),
            ("retrying", sampler.depth(name, "retrying")),
            ("parked", sampler.depth(name, "parked")),
            ("handled/s", sampler.delivered(name)),
            ("retried/s", sampler.outcome_rate(name, "retried")),
            ("parked/s", sampler.outcome_rate(name, "parked")),
        ],
        "p99": sampler.percentile(name, "handle"),
        "lag99": sampler.percentile(name, "lag"),
        "role_metrics": sampler.has_role_metrics,
    }


@routes.get("/consumers/{name}")
async def consumer(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    return page(request, "consumer.html", title=f"Consumer {name}", **await _view(request, name))


async def _known(request: web.Request, name: str) -> None:
    """404 for a consumer neither configured nor seen by a worker or a pause."""
    seen = request.app[OPS].specs.keys() | {
        v.name for v in await request.app[SAMPLER].consumer_views()
    }
    if name not in seen:
        raise web.HTTPNotFound(text=f"no consumer {name!r}")


@routes.post("/consumers/{name}/pause")
async def pause(request: web.Request) -> web.Response:
    form = await require_csrf(request)
    name = request.match_info["name"]
    await _known(request, name)
    text = form.get("for", "").strip()
    seconds = parse_duration(text) if text else None
    record = await request.app[OPS].pause(current(request).operator, name, seconds)
    await request.app[SAMPLER].sample()  # the page after shows the new state
    said = f"paused {record.consumer}" + (" until resumed" if seconds is None else f" for {text}")
    raise redirect(f"/consumers/{name}", said)


@routes.post("/consumers/{name}/resume")
async def resume(request: web.Request) -> web.Response:
    await require_csrf(request)
    name = request.match_info["name"]
    await _known(request, name)
    record = await request.app[OPS].resume(current(request).operator, name)
    await request.app[SAMPLER].sample()
    raise redirect(f"/consumers/{name}", f"resumed {record.consumer}")
