"""A router or worker answers /readyz only while it is connected and consuming."""

from __future__ import annotations

import aiohttp
import pytest
from pydantic import SecretStr

from shared.settings import Settings
from tests.support.broker import BrokerClient
from tests.support.processes import RoleProcess, free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker


async def _status(http: aiohttp.ClientSession, url: str) -> int:
    try:
        async with http.get(url) as response:
            return response.status
    except aiohttp.ClientError:
        return 0


@pytest.mark.parametrize("role", ["router", "worker"])
async def test_readyz_is_200_once_consuming_and_503_while_the_broker_is_unreachable(
    settings: Settings, broker: BrokerClient, role: str
) -> None:
    broker.track(["log"], settings.retry_delays)
    extra = ["--consumer", "log"] if role == "worker" else []
    port, dead_port = free_port(), free_port()
    up = await RoleProcess.start(role, settings, "--health-port", str(port), *extra)
    unreachable = settings.model_copy(
        update={"amqp_url": SecretStr(f"amqp://guest:guest@127.0.0.1:{free_port()}/")}
    )
    down = await RoleProcess.start(role, unreachable, "--health-port", str(dead_port), *extra)
    try:
        async with aiohttp.ClientSession() as http:
            ready = f"http://127.0.0.1:{port}/readyz"
            await eventually(lambda: _is(http, ready, 200), timeout=30, interval=0.1)
            not_ready = f"http://127.0.0.1:{dead_port}/readyz"
            await eventually(lambda: _is(http, not_ready, 503), timeout=30, interval=0.1)
            assert await _status(http, f"http://127.0.0.1:{dead_port}/healthz") == 200
    finally:
        await up.close()
        await down.close()


async def _is(http: aiohttp.ClientSession, url: str, status: int) -> bool:
    return await _status(http, url) == status


async def test_a_worker_whose_consumer_cannot_start_exits_1_instead_of_idling(
    settings: Settings, broker: BrokerClient
) -> None:
    broker.track(["broken-startup"], settings.retry_delays)
    worker = await RoleProcess.start(
        "worker", settings, "--consumer", "tests.support.broken_consumer"
    )
    try:
        assert await worker.wait(timeout=30) == 1
    finally:
        await worker.close()
