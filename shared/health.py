"""The admin port of a process: ``/healthz``, ``/readyz`` and ``/metrics``, for every role.

Never the public callback port: what describes the system stays off it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aiohttp import web

from shared.logs import get_logger
from shared.metrics import CONTENT_TYPE, Metrics, render

__all__ = ["HealthService", "Readiness"]

log = get_logger("health")


class Readiness(Protocol):
    """What the admin port uses of a role (every :class:`shared.service.RoleService`)."""

    @property
    def name(self) -> str: ...

    def readiness(self) -> dict[str, object]:
        """The role's facts: ``ready`` (connected and consuming, or taking callbacks) first."""
        ...


class HealthService:
    """A small HTTP server: ``/healthz`` (alive), ``/readyz`` (every role ready, with each
    role's facts), and ``/metrics`` (``metrics`` in Prometheus's text format; 404 without)."""

    name = "health"

    def __init__(
        self,
        host: str,
        port: int,
        roles: Sequence[Readiness],
        metrics: Metrics | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.roles = roles
        self.metrics = metrics
        self._runner: web.AppRunner | None = None

    @property
    def background(self) -> None:
        """Nothing connects in the background: the port is open once ``start`` returns."""
        return None

    @property
    def bound_port(self) -> int:
        """The port listened on (useful when ``port`` is 0)."""
        assert self._runner is not None, "not started"
        return int(self._runner.addresses[0][1])

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        """``{"status": ..., "<role>": <ready>, ..., "roles": {"<role>": <its facts>}}``."""
        facts = {role.name: role.readiness() for role in self.roles}
        states = {name: fact["ready"] is True for name, fact in facts.items()}
        ready = all(states.values())
        body = {"status": "ready" if ready else "not ready", **states, "roles": facts}
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        assert self.metrics is not None
        return web.Response(body=render(self.metrics), headers={"Content-Type": CONTENT_TYPE})

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.get("/healthz", self._healthz), web.get("/readyz", self._readyz)])
        if self.metrics is not None:
            app.add_routes([web.get("/metrics", self._metrics)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("admin endpoints listening", host=self.host, port=self.bound_port)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
