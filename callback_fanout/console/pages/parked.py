"""``/parked``, ``/parked/<queue>`` and ``/parked/<queue>/<message id>``: what is parked,
a filter, a message's detail, and Replay / Purge for a selection or the whole filter, each
confirmed after a dry run's count."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from callback_fanout.console.web import OPS, current, page, redirect, require_csrf
from callback_fanout.parking import MessageFilter
from shared.errors import ConfigError

routes = web.RouteTableDef()

#: Messages a page lists at most, and messages of the queue it looks at at most: a page
#: reads a bounded window, never the whole queue.
PAGE_LIMIT = 50
WINDOW = 500
_FILTERS = ("routing_key", "job_id", "reason")


def _filter(fields: Mapping[str, str], ids: list[str] | None = None) -> MessageFilter:
    values = {k: (fields.get(k) or "").strip() or None for k in _FILTERS}
    return MessageFilter(
        values["routing_key"],
        values["job_id"],
        values["reason"],
        frozenset(ids) if ids is not None else None,
    )


def _queue(request: web.Request) -> str:
    ops = request.app[OPS]
    queue = ops.parking.resolve(request.match_info["queue"])
    if queue not in ops.topology.parking_queues(list(ops.specs)) and not queue.endswith(".dead"):
        raise web.HTTPNotFound(text=f"no parking queue {queue!r}")
    return queue


@routes.get("/parked")
async def parked_index(request: web.Request) -> web.Response:
    counts = await request.app[OPS].parked_counts()
    return page(request, "parked_index.html", title="Parked", counts=counts)


@routes.get("/parked/{queue}")
async def parked_queue(request: web.Request) -> web.Response:
    ops = request.app[OPS]
    queue = _queue(request)
    fields = {k: request.query.get(k, "") for k in _FILTERS}
    shown = await ops.parked(queue, _filter(fields), limit=PAGE_LIMIT, window=WINDOW)
    total = (await ops.parked_counts()).get(queue)
    return page(
        request,
        "parked_queue.html",
        title=f"Parked in {queue}",
        queue=queue,
        fields=fields,
        rows=[(p, p.as_dict(with_body=False)) for p in shown],
        total=total,
        limit=PAGE_LIMIT,
        window=WINDOW,
    )


@routes.get("/parked/{queue}/{message_id}")
async def parked_message(request: web.Request) -> web.Response:
    ops = request.app[OPS]
    queue = _queue(request)
    message_id = request.match_info["message_id"]
    where = MessageFilter(message_ids=frozenset([message_id]))
    found = await ops.parked(queue, where, limit=1, window=WINDOW)
    if not found:
        raise web.HTTPNotFound(
            text=f"no message {message_id!r} among the first {WINDOW} of {queue}"
        )
    return page(
        request,
        "parked_message.html",
        title=f"Message {message_id}",
        queue=queue,
        parked=found[0],
        detail=found[0].as_dict(with_body=True),
    )


def _selection(form: MultiMapping[str]) -> tuple[str, str, list[str] | None]:
    """What a form asks: the action (replay, purge), the scope (selected, filter) and the
    selected message ids (None: the whole filter)."""
    action, _, scope = (form.get("do") or "").partition(":")
    if action not in ("replay", "purge") or scope not in ("selected", "filter"):
        raise ConfigError("choose Replay or Purge, for the selected messages or the filter")
    ids = [i for i in form.getall("id", []) if i] if scope == "selected" else None
    if ids is not None and not ids:
        raise ConfigError("no message selected: tick the messages first, or use the filter")
    return action, scope, ids


@routes.post("/parked/{queue}/confirm")
async def confirm(request: web.Request) -> web.Response:
    """The dry run: how many messages the action would touch, and a button to do it."""
    fields = await require_csrf(request)
    form = await request.post()
    queue = _queue(request)
    action, scope, ids = _selection(form)  # type: ignore[arg-type]
    where = _filter(fields, ids)
    ops = request.app[OPS]
    count = await ops.replay_parked(current(request).operator, queue, where, dry_run=True)
    return page(
        request,
        "parked_confirm.html",
        title=f"{action.capitalize()} from {queue}?",
        queue=queue,
        action=action,
        scope=scope,
        ids=ids or [],
        fields={k: fields.get(k, "") for k in _FILTERS},
        count=count,
    )


@routes.post("/parked/{queue}/do")
async def act(request: web.Request) -> web.Response:
    fields = await require_csrf(request)
    form = await request.post()
    queue = _queue(request)
    action, _scope, ids = _selection(form)  # type: ignore[arg-type]
    where = _filter(fields, ids)
    ops, operator = request.app[OPS], current(request).operator
    if action == "replay":
        count = await ops.replay_parked(operator, queue, where, dry_run=False)
        said = f"replayed {count} from {queue}"
    else:
        count = await ops.purge_parked(operator, queue, where)
        said = f"purged {count} from {queue}"
    kept: dict[str, Any] = {k: fields.get(k) for k in _FILTERS if fields.get(k)}
    query = "&".join(f"{k}={v}" for k, v in kept.items())
    raise redirect(f"/parked/{queue}" + (f"?{query}" if query else ""), said)
