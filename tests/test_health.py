"""Readiness: the ingress answers /readyz 200 only while the broker is connected and it is not
draining; a router or worker only while it is connected and consuming."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from shared.settings import Settings
from tests.conftest import StartSystem
from tests.support.broker import BrokerClient
from tests.support.http import status_of
from tests.support.processes import RoleProcess, free_port
from tests.support.proxy import CuttableProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker


@pytest.mark.parametrize("role", ["router", "worker"])
async def test_readyz_is_200_once_consuming_and_503_while_the_broker_is_unreachable(
    settings: Settings, broker: BrokerClient, role: str
) -> None:
    broker.track(["log"], settings.retry_delays)
    extra = ["--consumer", "log"] if role == "worker" else []
    port, dead_port = free_port(), free_port()
    up = await RoleProcess.start(role, settings, "--health-port", str(port), *extra)
    unreachable = settings.model_copy(
        update={"amqp_url": [SecretStr(f"amqp://guest:guest@127.0.0.1:{free_port()}/")]}
    )
    down = await RoleProcess.start(role, unreachable, "--health-port", str(dead_port), *extra)
    try:
        async with aiohttp.ClientSession() as http:
            ready = f"http://127.0.0.1:{port}/readyz"
            await eventually(lambda: _is(http, ready, 200), timeout=30, interval=0.1)
            not_ready = f"http://127.0.0.1:{dead_port}/readyz"
            await eventually(lambda: _is(http, not_ready, 503), timeout=30, interval=0.1)
            assert await status_of(http, f"http://127.0.0.1:{dead_port}/healthz") == 200
    finally:
        await up.close()
        await down.close()


async def _is(http: aiohttp.ClientSession, url: str, status: int) -> bool:
    return await status_of(http, url) == status


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


async def _readiness(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as response:
        body = await response.json()
        return response.status, {k: body[k] for k in ("status", "broker")}


async def test_the_ingress_readyz_is_503_while_the_broker_is_away_and_200_once_it_is_back(
    start_system: StartSystem, broker_proxy_settings: tuple[Settings, CuttableProxy]
) -> None:
    settings, proxy = broker_proxy_settings
    system = await start_system(settings_=settings, router=False, worker=False)
    assert system.ingress is not None
    readyz = f"http://127.0.0.1:{system.ingress.port}/readyz"
    ready = (200, {"status": "ready", "broker": True})
    away = (503, {"status": "not ready", "broker": False})
    assert await _readiness(system.http, readyz) == ready
    proxy.cut()

    async def says(expected: tuple[int, dict[str, Any]]) -> bool:
        return await _readiness(system.http, readyz) == expected

    await eventually(lambda: says(away), timeout=10)
    assert await _readiness(system.http, readyz) == away  # and stays so while it is away
    proxy.restore()
    await eventually(lambda: says(ready), timeout=20, interval=0.2)


async def test_the_ingress_readyz_is_503_once_it_begins_to_drain(
    start_system: StartSystem,
) -> None:
    system = await start_system(router=False, worker=False)
    assert system.ingress is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", system.ingress.port)
    try:
        # The health check arrives as the ingress is told to stop (SIGTERM does this).
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: ingress\r\n\r\n")
        stopping = asyncio.create_task(system.ingress.stop())
        head, _, body = (await asyncio.wait_for(reader.read(), 10)).partition(b"\r\n\r\n")
        await asyncio.wait_for(stopping, 20)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 503 ")
    answer = json.loads(body)
    assert (answer["status"], answer["broker"]) == ("not ready", True)  # connected, draining


@pytest.mark.parametrize("role", ["ingress", "router", "worker"])
async def test_a_role_whose_queue_exists_with_other_arguments_says_could_not_start_and_exits_1(
    settings: Settings, broker: BrokerClient, tmp_path: Path, role: str
) -> None:
    t = broker.topology
    broker.track(["log"], settings.retry_delays)
    # Someone declared the queue this role needs as a classic queue, without our arguments.
    taken = t.consumer("log", settings.retry_delays).main if role == "worker" else t.raw
    await broker.channel.declare_queue(taken, durable=True)
    log = tmp_path / f"{role}.log"
    extra = ["--consumer", "log"] if role == "worker" else ["--port", str(free_port())]
    process = await RoleProcess.start(role, settings, "--log-json", *extra, log=log)
    try:
        assert await process.wait(timeout=30) == 1
    finally:
        await process.close()
    lines = log.read_text().splitlines()
    assert not [line for line in lines if not line.startswith("{")]  # JSON lines, no traceback
    entries = [json.loads(line) for line in lines]
    [failed] = [e for e in entries if e["event"] == "could not start"]
    assert failed["level"] == "error"
    assert failed["service"] == role
    assert "PRECONDITION_FAILED" in failed["error"]
    assert "inequivalent arg" in failed["error"]
    assert f"for queue '{taken}'" in failed["error"]
