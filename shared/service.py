"""Running roles side by side and stopping them cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import functools
import signal
from collections.abc import Sequence
from typing import Protocol

from shared.logs import get_logger

__all__ = ["Service", "run_until_stopped"]

log = get_logger("service")


class Service(Protocol):
    """A role of the system: the ingress, a router, a consumer worker."""

    name: str

    async def start(self) -> None:
        """Start serving; return once started (connecting may go on in the background)."""
        ...

    async def stop(self) -> None:
        """Stop taking work, finish or hand back what is in flight, release everything.

        Idempotent: calling it twice is harmless.
        """
        ...


async def run_until_stopped(services: Sequence[Service], stop: asyncio.Event) -> int:
    """Start ``services`` in order, wait for ``stop`` (SIGTERM/SIGINT set it), stop in reverse.

    A service may expose ``background``, the task that connects it (and starts its
    consumers' hooks): if that task fails, the process stops and this returns 1, so that a
    supervisor restarts it instead of leaving it up and doing nothing.
    """
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started: list[Service] = []
    failed: list[str] = []

    def watch(service: Service, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("could not start", service=service.name, error=repr(task.exception()))
            failed.append(service.name)
            stop.set()

    try:
        for service in services:
            await service.start()
            started.append(service)
            background = getattr(service, "background", None)
            if isinstance(background, asyncio.Task):
                background.add_done_callback(functools.partial(watch, service))
            log.info("started", service=service.name)
        await stop.wait()
        log.info("stopping")
    finally:
        for service in reversed(started):
            await service.stop()
            log.info("stopped", service=service.name)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 1 if failed else 0
