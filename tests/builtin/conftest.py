"""Fixtures of the built-in consumers' tests: a PostgreSQL database for the run, a table
per test, and the system started with built-in consumers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import asyncpg
import pytest

from shared.callbacks import CallbackEvent
from shared.settings import Settings
from tests.conftest import RUN_PREFIX
from tests.support.broker import BrokerClient
from tests.support.postgres import database
from tests.support.system import RunningSystem
from workers.consumer import LoadedConsumer


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A database for this test run, dropped after it."""
    yield from database(f"cf_{RUN_PREFIX}".lower())


@pytest.fixture
def table(prefix: str) -> str:
    """A table name of this test's own."""
    return "events_" + prefix.rsplit("-", maxsplit=1)[-1]


@pytest.fixture
async def pg(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(pg_dsn)
    yield connection
    await connection.close()


@dataclass
class Outcomes:
    """What the runtime saw a consumer's handler do: returns and raises, in order."""

    handled: list[CallbackEvent] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def observed(loaded: LoadedConsumer) -> tuple[LoadedConsumer, Outcomes]:
    """The same consumer, its handler's outcomes recorded (the handler itself unchanged)."""
    outcomes = Outcomes()
    handle = loaded.handle

    async def recording(event: CallbackEvent) -> None:
        try:
            await handle(event)
        except Exception as exc:
            outcomes.errors.append(exc)
            raise
        outcomes.handled.append(event)

    return (
        LoadedConsumer(
            loaded.spec, recording, loaded.startup, loaded.shutdown, loaded.origin, loaded.target
        ),
        outcomes,
    )


StartWith = Callable[..., Awaitable[RunningSystem]]


@pytest.fixture
async def start_with(settings: Settings, broker: BrokerClient) -> AsyncIterator[StartWith]:
    """``await start_with([loaded, ...], **roles)``: the whole system with these consumers."""
    running: list[RunningSystem] = []

    async def start(consumers: Sequence[LoadedConsumer], **roles: bool) -> RunningSystem:
        for c in consumers:
            broker.track([c.spec.name], c.spec.retry_delays or settings.retry_delays)
        system = await RunningSystem.start(settings, consumers, **roles)
        running.append(system)
        return system

    yield start
    for system in running:
        await system.stop()
