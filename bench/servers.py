"""The servers the ingress is measured against, each a small aiohttp app on 127.0.0.1.

``noop``   reads the body of ``POST /callbacks`` and answers 200; nothing else.
``naive``  the obvious durable ingress: one aio-pika publish per request (persistent, to a
           durable quorum queue), each awaiting its own publisher confirm, then 200.
``app``    the ingress's own application (``ingress.app.create_app``) with a publisher that
           does nothing: the HTTP ceiling of our code, NOT durable; it shows how much of the
           gap to ``noop`` is the HTTP handling rather than the broker.
``group``  the ``naive`` server's minimal handler in front of our publisher
           (``ingress.publisher.AmqpPublisher``, group commit) on ``<prefix>.raw``: the two
           ways of making a body durable compared behind the same HTTP handling.
``fsync``  the same minimal handler, durable on local disk only: the bodies waiting at one
           moment are appended to one file and share one ``fdatasync`` (on a thread), then
           200. Nothing reaches the broker: the ceiling of any "answer once it is on local
           disk" design (a spool-first ingress) on this machine, NOT an ingress.

    python -m bench.servers noop --port 8001
    python -m bench.servers naive --port 8002 --queue bench-x.naive --amqp-url amqp://...
    python -m bench.servers group --port 8003 --prefix bench-x-group --amqp-url amqp://...
    python -m bench.servers fsync --port 8004 --file /tmp/bench-x.log

Each answers ``GET /healthz`` once ready, runs on uvloop when installed (as the ingress does),
and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator

import aio_pika
from aiohttp import web

__all__ = ["main"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def _noop_app() -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    app = web.Application()
    app.add_routes([web.post("/callbacks", receive), web.get("/healthz", _healthz)])
    return app


async def _naive_app(amqp_url: str, queue: str) -> web.Application:
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        message = aio_pika.Message(
            body,
            message_id=uuid.uuid4().hex,
            content_type=request.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await channel.default_exchange.publish(message, routing_key=queue)
        except Exception:
            return web.Response(status=503)
        return web.Response(status=200)

    async def close(_app: web.Application) -> None:
        await connection.close()

    app = web.Application()
    app.add_routes([web.post("/callbacks", receive), web.get("/healthz", _healthz)])
    app.on_cleanup.append(close)
    return app


def _http_only_app() -> web.Application:
    from ingress.app import create_app
    from ingress.groupcommit import Durable, RawMeta
    from shared.logs import configure_logging
    from shared.settings import Settings

    class DiscardingPublisher:
        """Accepts every body at once and keeps none (the ceiling, not an ingress)."""

        ready = True

        async def publish(self, body: bytes, meta: RawMeta) -> Durable:
            return "accepted"

    settings = Settings.load(log_level="error", host="127.0.0.1")
    configure_logging(settings)
    return create_app(settings, DiscardingPublisher())  # it has its own GET /healthz


def _request_ids() -> Iterator[str]:
    """Request ids as the ingress makes them: a random prefix per process, then a counter."""
    prefix = os.urandom(8).hex()
    return (f"{prefix}{n:016x}" for n in itertools.count())


async def _group_commit_app(amqp_url: str, prefix: str) -> web.Application:
    from ingress.groupcommit import AmqpPublisher, RawMeta
    from shared.errors import BrokerUnavailable
    from shared.settings import Settings

    publisher = AmqpPublisher(Settings.load(amqp_url=amqp_url, prefix=prefix))
    await publisher.start()
    ids = _request_ids()

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        request_id = next(ids)
        meta = RawMeta(request_id, time.time(), request.content_type, request.remote)
        try:
            await publisher.publish(body, meta)
        except BrokerUnavailable:
            return web.Response(status=503)
        return web.Response(status=200, headers={"X-Request-Id": request_id})

    async def close(_app: web.Application) -> None:
        await publisher.close()

    app = web.Application()
    app.add_routes([web.post("/callbacks", receive), web.get("/healthz", _healthz)])
    app.on_cleanup.append(close)
    return app


def _fsync_app(path: str) -> web.Application:
    loop = asyncio.get_running_loop()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    waiting: list[tuple[bytes, asyncio.Future[None]]] = []
    writing = False
    committing: set[asyncio.Task[None]] = set()  # a reference keeps the task alive

    def append(data: bytes) -> None:
        os.write(fd, data)
        os.fdatasync(fd)

    async def commit() -> None:
        nonlocal waiting, writing
        try:
            while waiting:
                group, waiting = waiting, []
                await loop.run_in_executor(None, append, b"".join(body for body, _ in group))
                for _, done in group:
                    if not done.done():
                        done.set_result(None)
        finally:
            writing = False

    async def receive(request: web.Request) -> web.Response:
        nonlocal writing
        body = await request.read()
        done = loop.create_future()
        waiting.append((body, done))
        if not writing:
            writing = True
            task = loop.create_task(commit())
            committing.add(task)
            task.add_done_callback(committing.discard)
        await done
        return web.Response(status=200)

    async def close(_app: web.Application) -> None:
        os.close(fd)
        os.unlink(path)

    app = web.Application()
    app.add_routes([web.post("/callbacks", receive), web.get("/healthz", _healthz)])
    app.on_cleanup.append(close)
    return app


async def _serve(args: argparse.Namespace) -> None:
    if args.kind == "noop":
        app = _noop_app()
    elif args.kind == "naive":
        app = await _naive_app(args.amqp_url, args.queue)
    elif args.kind == "group":
        app = await _group_commit_app(args.amqp_url, args.prefix)
    elif args.kind == "fsync":
        app = _fsync_app(args.file)
    else:
        app = _http_only_app()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="baseline servers for bench/ingress_bench.py")
    parser.add_argument("kind", choices=["noop", "naive", "app", "group", "fsync"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--queue", default="bench.naive", help="the naive server's queue")
    parser.add_argument("--prefix", default="bench-group", help="the group server's prefix")
    parser.add_argument("--file", default="bench-fsync.log", help="the fsync server's file")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(args))
    else:
        uvloop.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
