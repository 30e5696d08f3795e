"""``/replay``: re-deliver archived events to one consumer (the `replay` command): a form,
its dry run (the count and the first events), then the replay in the background with its
progress."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from callback_fanout.archived import Window
from callback_fanout.console.web import OPS, current, page, redirect, require_csrf
from callback_fanout.replaying import ReplayRequest
from callback_fanout.when import parse_time
from shared.errors import ConfigError

routes = web.RouteTableDef()
_FIELDS = ("consumer", "since", "until", "routing_key", "job_id", "rate")


def _request(fields: Mapping[str, str]) -> tuple[ReplayRequest, float | None]:
    consumer = fields.get("consumer", "").strip()
    since = fields.get("since", "").strip()
    if not consumer or not since:
        raise ConfigError("a replay needs a consumer and a start (since)")
    until = fields.get("until", "").strip() or None
    now = datetime.now(UTC)
    window = Window(
        since=parse_time(since, now),
        until=parse_time(until, now) if until else None,
        routing_key=fields.get("routing_key", "").strip() or None,
        job_id=fields.get("job_id", "").strip() or None,
    )
    rate_text = fields.get("rate", "").strip()
    try:
        rate = float(rate_text) if rate_text else None
    except ValueError:
        raise ConfigError(f"rate {rate_text!r} is not a number of events a second") from None
    if rate is not None and not rate > 0:
        raise ConfigError("a rate is a number of events a second above 0")
    return ReplayRequest(consumer, window, since, until), rate


def _form(fields: Mapping[str, str]) -> dict[str, str]:
    return {k: fields.get(k, "") for k in _FIELDS}


def _context(request: web.Request, **more: Any) -> dict[str, Any]:
    ops = request.app[OPS]
    try:
        archive = ops.archive().describe()
    except ConfigError as exc:
        archive, more["problem"] = None, str(exc)
    replays = sorted(ops.replays.values(), key=lambda job: job.started, reverse=True)
    return {"consumers": sorted(ops.specs), "archive": archive, "replays": replays, **more}


@routes.get("/replay")
async def replay_form(request: web.Request) -> web.Response:
    fields = _form(request.query)
    return page(
        request,
        "replay.html",
        title="Replay history",
        fields=fields,
        plan=None,
        **_context(request),
    )


@routes.get("/replay/progress")
async def replay_progress(request: web.Request) -> web.Response:
    return page(request, "_replay_progress.html", **_context(request))


@routes.post("/replay/plan")
async def replay_plan(request: web.Request) -> web.Response:
    fields = await require_csrf(request)
    wanted, rate = _request(fields)
    plan = await request.app[OPS].plan_history_replay(wanted)
    return page(
        request,
        "replay.html",
        title="Replay history",
        fields=_form(fields),
        plan=plan,
        rate=rate,
        **_context(request),
    )


@routes.post("/replay/start")
async def replay_start(request: web.Request) -> web.Response:
    fields = await require_csrf(request)
    wanted, rate = _request(fields)
    job = await request.app[OPS].start_history_replay(current(request).operator, wanted, rate)
    raise redirect("/replay", f"replay of {job.plan.pending} events to {wanted.consumer} started")
