"""The whole system in the test's event loop: ingress on a free port, router, worker."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ingress.server import IngressService
from shared.health import HealthService
from shared.settings import Settings
from workers import CallbackEvent, GiveUp, consumer
from workers.consumer import LoadedConsumer
from workers.router.service import RouterService
from workers.runtime.worker import WorkerService

__all__ = ["START_TIMEOUT", "Recorder", "RunningSystem"]

#: Seconds each role may take to start; a role that takes longer fails the test.
START_TIMEOUT = 20.0


@dataclass
class Recorder:
    """A test consumer that records the events it is given and can be told to fail."""

    name: str
    routes: Sequence[str]
    fail_times: int = 0
    always_fail: bool = False
    delay: float = 0.0
    max_attempts: int | None = None
    retry_delays: Sequence[float] | None = None
    dedupe: bool = False
    timeout: float | None = None
    give_up: bool = False
    events: list[CallbackEvent] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)

    def loaded(self) -> LoadedConsumer:
        @consumer(
            name=self.name,
            routes=list(self.routes),
            max_attempts=self.max_attempts,
            retry_delays=self.retry_delays,
            dedupe=self.dedupe,
            timeout=self.timeout,
        )
        async def handle(event: CallbackEvent) -> None:
            self.calls.append(asyncio.get_running_loop().time())
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.give_up:
                raise GiveUp(f"{self.name} gives up on purpose")
            if self.always_fail or len(self.calls) <= self.fail_times:
                raise RuntimeError(f"{self.name} fails on purpose (call {len(self.calls)})")
            self.events.append(event)

        return LoadedConsumer.from_target(handle, f"test:{self.name}")


@dataclass
class RunningSystem:
    settings: Settings
    ingress: IngressService | None
    router: RouterService | None
    worker: WorkerService | None
    http: aiohttp.ClientSession
    #: Each role's admin endpoints (``admin=True``): its own /healthz, /readyz, /metrics.
    admin: dict[str, HealthService] = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.ingress is not None
        return f"http://127.0.0.1:{self.ingress.port}/callbacks"

    async def post(
        self, body: bytes | Any, content_type: str = "application/xml", **headers: str
    ) -> aiohttp.ClientResponse:
        """POST ``body`` (bytes, a file object, or an async iterator: chunked) to the ingress."""
        async with self.http.post(
            self.url, data=body, headers={"Content-Type": content_type, **headers}
        ) as response:
            await response.read()
            return response

    def admin_url(self, role: str, path: str = "/metrics") -> str:
        """``path`` on ``role``'s admin port."""
        return f"http://127.0.0.1:{self.admin[role].bound_port}{path}"

    async def stop(self) -> None:
        for admin in self.admin.values():
            await admin.stop()
        for service in (self.ingress, self.router, self.worker):
            if service is not None:
                await service.stop()
        await self.http.close()

    @classmethod
    async def start(
        cls,
        settings: Settings,
        consumers: Sequence[LoadedConsumer] = (),
        *,
        ingress: bool = True,
        router: bool = True,
        worker: bool = True,
        admin: bool = False,
    ) -> RunningSystem:
        """Start the roles asked for; ``admin``: each with its own admin port (port 0)."""
        system = cls(
            settings,
            IngressService(settings) if ingress else None,
            RouterService(settings) if router else None,
            WorkerService(settings, consumers) if worker else None,
            aiohttp.ClientSession(),
        )
        try:
            if system.worker is not None:
                await system.worker.start()
                await asyncio.wait_for(system.worker.wait_started(), START_TIMEOUT)
            if system.router is not None:
                await system.router.start()
                await asyncio.wait_for(system.router.wait_started(), START_TIMEOUT)
            if system.ingress is not None:
                await system.ingress.start()
                await system._ingress_ready()
            if admin:
                for role in (system.ingress, system.router, system.worker):
                    if role is not None:
                        served = HealthService("127.0.0.1", 0, [role], role.metrics)
                        await served.start()
                        system.admin[role.name] = served
        except BaseException:
            await system.stop()
            raise
        return system

    async def _ingress_ready(self) -> None:
        assert self.ingress is not None
        publisher = self.ingress.publisher
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT
        while not publisher.ready:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"the ingress did not connect to the broker within {START_TIMEOUT:.0f} s"
                )
            await asyncio.sleep(0.05)
