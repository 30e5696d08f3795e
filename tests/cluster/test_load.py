"""The load's own accounting (no cluster): a 200 it cannot follow is not silently dropped."""

from __future__ import annotations

import itertools

import aiohttp
from aiohttp import web

from tests.cluster.load import Load
from tests.support.waiting import eventually


async def test_a_200_without_a_request_id_is_counted_apart_not_dropped() -> None:
    numbers = itertools.count()

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        n = next(numbers)
        if n % 3 == 0:
            return web.Response(status=200)  # accepted, but no X-Request-Id
        if n % 3 == 1:
            return web.Response(status=200, headers={"X-Request-Id": f"id-{n}"})
        return web.Response(status=503, headers={"Retry-After": "1"})

    app = web.Application()
    app.router.add_post("/callbacks", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    load = Load(f"http://127.0.0.1:{port}/callbacks", [b"<Response/>"], senders=2, pause=0)
    try:
        async with aiohttp.ClientSession() as http:
            await load.start(http)
            await eventually(lambda: len(load.answers) >= 30)
            await load.stop()
    finally:
        await runner.cleanup()
    anonymous = [a for a in load.answers if a.status == 200 and a.request_id is None]
    assert anonymous
    assert load.unidentified == len(anonymous)
    assert len(load.accepted) == load.count(200) - load.unidentified
