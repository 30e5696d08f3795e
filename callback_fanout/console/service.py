"""The console as a service of its own: a broker connection, the sampler behind its charts,
and the web app on ``console_host:console_port``."""

from __future__ import annotations

import asyncio

from aiohttp import web

from callback_fanout.console.auth import Sessions
from callback_fanout.console.operations import Operations
from callback_fanout.console.sampler import Sampler
from callback_fanout.console.web import make_app
from shared.amqp import connect
from shared.logs import get_logger
from shared.metrics import Metrics
from shared.settings import Settings

__all__ = ["ConsoleService"]

log = get_logger("console")


class ConsoleService:
    """``callback-fanout console``. ``start`` returns once the broker answered and the port
    is open."""

    name = "console"

    def __init__(
        self, settings: Settings, metrics: Metrics | None = None, *, interval: float = 5.0
    ) -> None:
        self.settings = settings
        self.sessions = Sessions.from_settings(settings)  # refuses a bad token at once
        self.metrics = metrics or Metrics()
        self.interval = interval
        self.ops: Operations | None = None
        self.sampler: Sampler | None = None
        self._runner: web.AppRunner | None = None
        self._stop = asyncio.Event()

    @property
    def background(self) -> None:
        return None

    @property
    def bound_port(self) -> int:
        assert self._runner is not None, "not started"
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        settings = self.settings
        connection = await connect(settings, role="console", stop=self._stop)
        self.ops = Operations(settings, connection, self.metrics)
        self.sampler = Sampler(
            self.ops.status,
            self.ops.consumers,
            settings.console_role_urls,
            interval=self.interval,
        )
        self.sampler.start()
        app = make_app(self.ops, self.sessions, self.sampler, self.metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.console_host, settings.console_port)
        await site.start()
        log.info(
            "console listening",
            url=f"http://{settings.console_host}:{self.bound_port}/",
            login="open (loopback)" if self.sessions.open else "console token",
        )

    async def stop(self) -> None:
        self._stop.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.sampler is not None:
            await self.sampler.stop()
            self.sampler = None
        if self.ops is not None:
            await self.ops.close()
            await self.ops.connection.close()
            self.ops = None
