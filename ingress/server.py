"""The ingress as a service: an HTTP server in front of the publisher."""

from __future__ import annotations

from aiohttp import web

from ingress.app import STATE, create_app, taking_callbacks
from ingress.guard import GUARD
from ingress.metrics import IngressMetrics
from ingress.spooling import SpoolingPublisher, build_publisher
from shared.logs import get_logger
from shared.metrics import Metrics
from shared.service import RoleService
from shared.settings import Settings

__all__ = ["IngressService"]

log = get_logger("ingress")


class IngressService(RoleService):
    """Serves ``POST /callbacks`` at once; answers 503 until the broker is connected."""

    name = "ingress"

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        super().__init__(settings, metrics)
        counted = IngressMetrics(self.metrics) if self.metrics is not None else None
        self.publisher = build_publisher(
            settings,
            batch_bodies=counted.batch_bodies if counted is not None else None,
            alarm=self.alarm,
        )
        self.app = create_app(settings, self.publisher, counted)
        if counted is not None and isinstance(self.publisher, SpoolingPublisher):
            counted.watch_spool(self.publisher.spool)
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when the settings asked for port 0)."""
        assert self._runner is not None, "not started"
        return int(self._runner.addresses[0][1])

    @property
    def ready(self) -> bool:
        """Taking callbacks: the broker (or the spool) can make a body durable."""
        return taking_callbacks(self.app)

    @property
    def broker_connected(self) -> bool:
        """Connected to the broker, the raw queue declared (the spool aside)."""
        publisher = self.publisher
        if isinstance(publisher, SpoolingPublisher):
            return publisher.inner.ready
        return publisher.ready

    def readiness(self) -> dict[str, object]:
        """Ready and connected, who may post and what was refused (never a secret)."""
        return {**super().readiness(), **self.app[GUARD].status()}

    async def _connect(self) -> None:
        await self.publisher.start(self._stop)

    async def _serve(self) -> None:
        settings = self.settings
        self._runner = web.AppRunner(
            self.app,
            access_log=None,  # an access log would print the token in the path
            shutdown_timeout=settings.shutdown_grace,
            # Against slow or oversized heads: the idle timer runs from the connection's
            # start until a complete request head has arrived (and between requests), so a
            # client that trickles its head in is cut off; the body has `body_timeout`.
            keepalive_timeout=settings.header_timeout,
            max_line_size=settings.max_header_bytes,
            max_field_size=settings.max_header_bytes,
            max_headers=settings.max_headers,
            auto_decompress=False,  # ingress.body decodes within the body limit
            # After a refusal (403/404/408/413/429...) aiohttp reads and discards the rest of
            # the body so the client sees the answer; bound that to 2 s, not its 10 s.
            lingering_time=2.0,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port, reuse_port=True)
        await site.start()
        log.info("ingress listening", host=self.settings.host, port=self.port)
        for warning in self.app[GUARD].warnings:
            log.warning(warning)

    async def _stop_taking_work(self) -> None:
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        self.app[STATE].draining = True  # new requests get 503 from here on
        # Closing the site stops accepting, then waits for in-flight requests to finish.
        await runner.cleanup()

    async def _release(self) -> None:
        await self.publisher.close()
