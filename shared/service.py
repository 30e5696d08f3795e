"""A role's one lifecycle, and running services side by side until SIGTERM/SIGINT.

Every role (the ingress, a router, a consumer worker) is a :class:`RoleService`: ``start``
returns at once while a background task connects to the broker, ``ready`` and
``broker_connected`` say how it is doing, ``alarm`` whether the broker blocks its
connection (a memory or disk alarm, ``shared.alarms``), ``readiness()`` gives its facts for
the admin port's ``/readyz``, and ``stop`` hands back or finishes what is in flight. The
router and the worker consume on a connection of their own (:class:`ConsumingRole`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Protocol

from aio_pika.abc import AbstractRobustConnection

from shared.alarms import BrokerAlarm
from shared.amqp import connect, within
from shared.logs import get_logger
from shared.metrics import Metrics, metrics_for
from shared.settings import Settings

__all__ = ["ConsumingRole", "RoleService", "Service", "run_until_stopped"]

log = get_logger("service")


class Service(Protocol):
    """What :func:`run_until_stopped` uses of what it runs: a role or an admin port."""

    @property
    def name(self) -> str: ...

    @property
    def background(self) -> asyncio.Task[None] | None:
        """The task that connects the service, if any: its failure stops the process."""
        ...

    async def start(self) -> None:
        """Start serving; return once started (connecting may go on in the background)."""
        ...

    async def stop(self) -> None:
        """Stop taking work, finish or hand back what is in flight, release everything.

        Idempotent: calling it twice is harmless.
        """
        ...


class RoleService(ABC):
    """The lifecycle every role shares.

    ``start`` opens what serves at once (the ingress's port) and connects in a background
    task; ``stop`` tells that task to give up (``_stop``), stops taking work, cancels a
    connection still being made, then releases the rest. Counts in ``metrics`` (the
    process's), else in a registry of its own (``self.metrics``, served by the admin port),
    unless the ``metrics`` setting is off; either way ``broker_connected`` and
    ``broker_blocked`` are exported.
    """

    name: ClassVar[str]

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics_for(settings, metrics)
        self.alarm = BrokerAlarm(self.name)
        if self.metrics is not None:
            self.metrics.broker_connected(self.name, lambda: self.broker_connected)
            self.metrics.broker_blocked(self.name, lambda: self.alarm.blocked)
        self._starting: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()  # set when stopping: connecting gives up
        self._stopping = False

    @property
    @abstractmethod
    def ready(self) -> bool:
        """Doing its work: connected and consuming (or taking callbacks)."""

    @property
    @abstractmethod
    def broker_connected(self) -> bool:
        """Connected to the broker."""

    def readiness(self) -> dict[str, object]:
        """What the admin port's ``/readyz`` says of this role: ``broker_blocked`` is the
        broker's reason while it blocks the connection (``low on memory``), else None."""
        return {
            "ready": self.ready,
            "broker": self.broker_connected,
            "broker_blocked": self.alarm.reason,
        }

    @property
    def background(self) -> asyncio.Task[None] | None:
        """The task that connects this service; its failure stops the process."""
        return self._starting

    async def start(self) -> None:
        self._starting = asyncio.create_task(self._connect())
        await self._serve()

    async def wait_started(self) -> None:
        """Wait until connected and consuming (tests and readiness)."""
        assert self._starting is not None, "not started"
        await asyncio.shield(self._starting)

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._stop.set()
        self.alarm.release()  # deliveries held for a broker alarm are handed back now
        await self._stop_taking_work()
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()  # a start that failed was logged already: not re-raised
            with contextlib.suppress(asyncio.CancelledError):
                await self._starting
        await self._release()

    @abstractmethod
    async def _connect(self) -> None:
        """Connect and begin the work (the background task); give up when ``_stop`` is set."""

    async def _serve(self) -> None:  # noqa: B027 - a hook, empty unless overridden
        """Open at start what serves at once, before the broker answers (nothing here)."""

    async def _stop_taking_work(self) -> None:  # noqa: B027 - a hook, as _serve
        """The first step of stopping, before a connection still being made is cancelled."""

    @abstractmethod
    async def _release(self) -> None:
        """Finish or hand back what is in flight and release everything."""


class ConsumingRole(RoleService):
    """A role that consumes on a broker connection of its own: a router, a worker."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        super().__init__(settings, metrics)
        self._connection: AbstractRobustConnection | None = None

    @property
    def broker_connected(self) -> bool:
        connection = self._connection
        return connection is not None and connection.connected.is_set()

    async def _connect(self) -> None:
        self._connection = await connect(
            self.settings, role=self.name, stop=self._stop, alarm=self.alarm
        )
        await self._consume(self._connection)

    @abstractmethod
    async def _consume(self, connection: AbstractRobustConnection) -> None:
        """Declare what this role needs on ``connection`` and begin consuming."""

    async def _release(self) -> None:
        await self._settle()
        if self._connection is not None:
            await within(5.0, self._connection.close(), "close connection")

    @abstractmethod
    async def _settle(self) -> None:
        """Stop consuming, let what is in flight finish within the grace, close the rest
        (the connection is closed after)."""


async def run_until_stopped(services: Sequence[Service], stop: asyncio.Event) -> int:
    """Start ``services`` in order, wait for ``stop`` (SIGTERM/SIGINT set it), stop in reverse.

    If a service's ``background`` task (connecting it, starting its consumers' hooks) fails,
    the process stops and this returns 1, so that a supervisor restarts it instead of leaving
    it up and doing nothing.
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
            if service.background is not None:
                service.background.add_done_callback(functools.partial(watch, service))
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
