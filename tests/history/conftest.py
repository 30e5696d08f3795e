"""Fixtures of the delivery history's tests: a PostgreSQL database for the run (dropped
after it), and settings whose history goes there."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence

import asyncpg
import pytest
from pydantic import SecretStr

from shared.settings import Settings
from tests.conftest import RUN_PREFIX
from tests.support.broker import BrokerClient
from tests.support.postgres import database
from tests.support.system import RunningSystem
from workers.consumer import LoadedConsumer


@pytest.fixture(scope="session")
def history_dsn() -> Iterator[str]:
    """A database for this test run's history, dropped after it."""
    yield from database(f"cf_history_{RUN_PREFIX}".lower())


@pytest.fixture
def history_settings(settings: Settings, history_dsn: str) -> Settings:
    """The test's settings (its own prefix) with the delivery history on."""
    return settings.model_copy(update={"history_dsn": SecretStr(history_dsn)})


@pytest.fixture
async def pg(history_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(history_dsn)
    yield connection
    await connection.close()


StartWith = Callable[[Sequence[LoadedConsumer]], Awaitable[RunningSystem]]


@pytest.fixture
async def start_with(settings: Settings, broker: BrokerClient) -> AsyncIterator[StartWith]:
    """``await start_with([loaded, ...])``: the whole system with these consumers."""
    running: list[RunningSystem] = []

    async def start(consumers: Sequence[LoadedConsumer]) -> RunningSystem:
        for c in consumers:
            broker.track([c.spec.name], c.spec.retry_delays or settings.retry_delays)
        system = await RunningSystem.start(settings, consumers)
        running.append(system)
        return system

    yield start
    for system in running:
        await system.stop()
