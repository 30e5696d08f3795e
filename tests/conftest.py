"""Fixtures: the broker (AMQP_URL or testcontainers, never skipped), a prefix per test,
and the whole system started in-process."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import aio_pika
import pytest
import structlog
from pydantic import SecretStr
from yarl import URL

from shared.settings import Settings
from shared.topology import Topology
from tests.support.broker import BrokerClient, BrokerUnderTest, provide_broker
from tests.support.broker_control import BrokerControl, NoBrokerControl, find_control
from tests.support.proxy import CuttableProxy
from tests.support.system import Recorder, RunningSystem

RUN_PREFIX = f"t{os.getpid()}{secrets.token_hex(2)}"
_counter = itertools.count(1)
SEEDS = Path(__file__).resolve().parents[1] / "workers" / "testing" / "seeds"
#: The vendor's example callbacks (the seeds folder is a package: its code is not one).
SEED_FILES = sorted(p for p in SEEDS.iterdir() if p.suffix in (".xml", ".json"))
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _logs_to_stderr() -> None:
    """Logs go to stderr, as in production, so stdout holds only what commands print."""
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


@pytest.fixture(autouse=True)
def _logging_config_restored() -> Iterator[None]:
    """A test that runs the command in-process (`main([...])`) configures logging onto the
    stderr pytest captured for it, closed after the test: put the suite's configuration back
    so that later tests do not log into a closed file."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def broker_under_test() -> Iterator[BrokerUnderTest]:
    with provide_broker() as under_test:
        yield under_test
        _sweep(under_test, RUN_PREFIX)


@pytest.fixture(scope="session")
def amqp_url(broker_under_test: BrokerUnderTest) -> str:
    return broker_under_test.url


@pytest.fixture
async def broker_control(broker_under_test: BrokerUnderTest) -> BrokerControl:
    """``rabbitmqctl`` for exactly the broker under test; the test fails if there is none."""
    try:
        return await find_control(broker_under_test.url, broker_under_test.container)
    except NoBrokerControl as exc:
        pytest.fail(f"this test needs to control the broker under test: {exc}", pytrace=False)


def _sweep(under_test: BrokerUnderTest, prefix: str) -> None:
    """Belt and braces: delete any queue or exchange of this run a test failed to clean up
    (needs ``rabbitmqctl`` for the broker under test to list them; none, nothing to do)."""
    if under_test.container is not None:
        return  # the container goes away with everything in it
    try:
        control = asyncio.run(find_control(under_test.url))
    except (NoBrokerControl, OSError, aio_pika.exceptions.AMQPError):
        return

    def listed(what: str) -> list[str]:
        try:
            out = control.rabbitmqctl(f"list_{what}", "name", timeout=60).split()
        except NoBrokerControl:
            return []
        return [name for name in out if name.startswith(prefix + "-")]

    async def delete(queues: list[str], exchanges: list[str]) -> None:
        connection = await aio_pika.connect(under_test.url)
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)
        await connection.close()

    queues, exchanges = listed("queues"), listed("exchanges")
    if queues or exchanges:
        asyncio.run(delete(queues, exchanges))


@pytest.fixture
def prefix() -> str:
    return f"{RUN_PREFIX}-{next(_counter)}"


@pytest.fixture
def settings(amqp_url: str, prefix: str) -> Settings:
    return Settings.load(
        amqp_url=amqp_url,
        prefix=prefix,
        host="127.0.0.1",
        port=0,
        retry_delays=[0.2, 0.4],
        max_attempts=3,
        handler_timeout=5.0,
        shutdown_grace=5.0,
        confirm_timeout=2.0,
        entry_points=False,
        log_json=True,
    )


@pytest.fixture
async def broker(amqp_url: str, settings: Settings) -> AsyncIterator[BrokerClient]:
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    client = BrokerClient(amqp_url, Topology(settings.prefix), connection, channel)
    client.delays.update(settings.retry_delays)
    yield client
    await client.cleanup()


StartSystem = Callable[..., Awaitable[RunningSystem]]


@pytest.fixture
async def start_system(settings: Settings, broker: BrokerClient) -> AsyncIterator[StartSystem]:
    """``await start_system([recorder, ...], **setting_overrides)``; stopped at teardown."""
    running: list[RunningSystem] = []

    async def start(
        recorders: Sequence[Recorder] = (), *, settings_: Settings | None = None, **roles: bool
    ) -> RunningSystem:
        chosen = settings_ or settings
        for rec in recorders:
            broker.track([rec.name], rec.retry_delays or chosen.retry_delays)
        system = await RunningSystem.start(chosen, [r.loaded() for r in recorders], **roles)
        running.append(system)
        return system

    yield start
    for system in running:
        await system.stop()


@pytest.fixture
async def broker_proxy_settings(
    settings: Settings, amqp_url: str
) -> AsyncIterator[tuple[Settings, CuttableProxy]]:
    """Settings whose broker URL goes through a proxy the test can cut and restore."""
    target = URL(amqp_url)
    proxy = CuttableProxy(target.host or "127.0.0.1", target.port or 5672)
    await proxy.start()
    proxied = str(target.with_host("127.0.0.1").with_port(proxy.port))
    yield settings.model_copy(update={"amqp_url": [SecretStr(proxied)]}), proxy
    await proxy.close()
