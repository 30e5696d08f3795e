"""``/healthz`` and ``/readyz`` for the roles that serve no HTTP of their own (router, worker)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aiohttp import web

from shared.logs import get_logger

__all__ = ["HealthService", "Readiness"]

log = get_logger("health")


class Readiness(Protocol):
    name: str

    @property
    def ready(self) -> bool:
        """True while connected to the broker and consuming."""
        ...


class HealthService:
    """A small HTTP server: ``/healthz`` (alive), ``/readyz`` (every role ready)."""

    name = "health"

    def __init__(self, host: str, port: int, roles: Sequence[Readiness]) -> None:
        self.host = host
        self.port = port
        self.roles = roles
        self._runner: web.AppRunner | None = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        states = {role.name: role.ready for role in self.roles}
        ready = all(states.values())
        return web.json_response(
            {"status": "ready" if ready else "not ready", **states}, status=200 if ready else 503
        )

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.get("/healthz", self._healthz), web.get("/readyz", self._readyz)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("health endpoints listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
