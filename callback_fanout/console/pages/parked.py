"""``/parked``, ``/parked/<queue>`` and ``/parked/<queue>/<message id>``: what is parked,
a filter, a message's detail, and Replay / Purge for a selection or the whole filter, each
confirmed after a dry run's count."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from aiohttp import web

from callback_fanout.console.web import OPS, current, page, redirect, require_csrf, wider, window_of
from callback_fanout.parking import MessageFilter
from shared.errors import ConfigError

routes = web.RouteTableDef()

#: Messages a page lists at most.
PAGE_LIMIT = 50
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
    window = window_of(request)
    shown = await ops.parked(queue, _filter(fields), limit=PAGE_LIMIT, window=window)
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
        window=window,
        wider=wider(window),
    )


@routes.get("/parked/{queue}/{message_id}")
async def parked_message(request: web.Request) -> web.Response:
    ops = request.app[OPS]
    queue = _queue(request)
    message_id = request.match_info["message_id"]
    where = MessageFilter(message_ids=frozenset([message_id]))
    window = window_of(request)
    found = await ops.parked(queue, where, limit=1, window=window)
    if not found:
        raise web.HTTPNotFound(
            text=f"no message {message_id!r} among the first {window} of {queue} "
            f"(?window=N looks further)"
        )
    return page(
        request,
        "parked_message.html",
        title=f"Message {message_id}",
        queue=queue,
        parked=found[0],
        detail=found[0].as_dict(with_body=True),
    )


@dataclass(frozen=True)
class _Asked:
    """What a Replay or Purge form asks: the queue, the action (replay, purge), the scope
    (the selected messages, or every one the filter matches), and those messages."""

    queue: str
    action: str
    scope: str
    ids: list[str] | None  # None: the whole filter
    fields: dict[str, str]  # the filter as typed

    @property
    def where(self) -> MessageFilter:
        return _filter(self.fields, self.ids)


async def _asked(request: web.Request) -> _Asked:
    fields = await require_csrf(request)
    form = await request.post()
    action, _, scope = str(form.get("do") or "").partition(":")
    if action not in ("replay", "purge") or scope not in ("selected", "filter"):
        raise ConfigError("choose Replay or Purge, for the selected messages or the filter")
    ids = None
    if scope == "selected":
        ids = [i for i in form.getall("id", []) if isinstance(i, str) and i]
        if not ids:
            raise ConfigError("no message selected: tick the messages first, or use the filter")
    return _Asked(_queue(request), action, scope, ids, {k: fields.get(k, "") for k in _FILTERS})


@routes.post("/parked/{queue}/confirm")
async def confirm(request: web.Request) -> web.Response:
    """The dry run: how many messages the action would touch, and a button to do it."""
    asked = await _asked(request)
    operator = current(request).operator
    count = await request.app[OPS].replay_parked(operator, asked.queue, asked.where, dry_run=True)
    return page(
        request,
        "parked_confirm.html",
        title=f"{asked.action.capitalize()} from {asked.queue}?",
        queue=asked.queue,
        action=asked.action,
        scope=asked.scope,
        ids=asked.ids or [],
        fields=asked.fields,
        count=count,
    )


@routes.post("/parked/{queue}/do")
async def act(request: web.Request) -> web.Response:
    asked = await _asked(request)
    queue, where = asked.queue, asked.where
    ops, operator = request.app[OPS], current(request).operator
    if asked.action == "replay":
        count = await ops.replay_parked(operator, queue, where, dry_run=False)
        said = f"replayed {count} from {queue}"
    else:
        count = await ops.purge_parked(operator, queue, where)
        said = f"purged {count} from {queue}"
    query = urlencode({k: v for k, v in asked.fields.items() if v})
    raise redirect(f"/parked/{quote(queue, safe='')}" + (f"?{query}" if query else ""), said)
