"""Readiness: the ingress answers /readyz 200 only while the broker is connected and it is not
draining; a router or worker only while it is connected and consuming. The callback port's
/readyz says ready or not and nothing more; the admin port's gives each role's facts."""

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
from tests.support.system import Recorder
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


async def _answer(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as response:
        return response.status, await response.json()


async def test_the_ingress_readyz_is_503_while_the_broker_is_away_and_200_once_it_is_back(
    start_system: StartSystem, broker_proxy_settings: tuple[Settings, CuttableProxy]
) -> None:
    settings, proxy = broker_proxy_settings
    system = await start_system(settings_=settings, router=False, worker=False, admin=True)
    assert system.ingress is not None
    public = f"http://127.0.0.1:{system.ingress.port}/readyz"
    admin = system.admin_url("ingress", "/readyz")

    async def says(ready: bool) -> bool:
        status, answer = await _answer(system.http, public)
        return (status, answer) == (200 if ready else 503, {"ready": ready})

    async def admin_says_broker(connected: bool) -> bool:
        _, answer = await _answer(system.http, admin)
        return answer["roles"]["ingress"]["broker"] is connected

    assert await says(ready=True)
    assert await admin_says_broker(True)
    proxy.cut()
    await eventually(lambda: says(ready=False), timeout=10)
    assert await says(ready=False)  # and stays so while it is away
    assert await admin_says_broker(False)
    proxy.restore()
    await eventually(lambda: says(ready=True), timeout=20, interval=0.2)
    assert await admin_says_broker(True)


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
    assert json.loads(body) == {"ready": False}  # still connected, but draining


async def test_the_public_readyz_says_ready_and_nothing_else_while_the_admin_port_tells_all(
    start_system: StartSystem, settings: Settings
) -> None:
    guarded = Settings.load(**{**settings.model_dump(), "tokens": ["ci=s3cret-token-value"]})
    system = await start_system(settings_=guarded, router=False, worker=False, admin=True)
    assert system.ingress is not None
    public = f"http://127.0.0.1:{system.ingress.port}"
    async with system.http.post(f"{public}/callbacks/wrong-token", data=b"{}") as refused:
        assert refused.status == 404

    assert await _answer(system.http, f"{public}/readyz") == (200, {"ready": True})
    status, admin = await _answer(system.http, system.admin_url("ingress", "/readyz"))
    assert status == 200
    assert admin == {
        "status": "ready",
        "ingress": True,
        "roles": {
            "ingress": {
                "ready": True,
                "broker": True,
                "broker_blocked": None,
                "auth": "token",
                "tokens": 1,
                "allowlist": False,
                "rate_limit": False,
                "refused": {"token": 1},
                "warnings": [],
            }
        },
    }
    assert "s3cret-token-value" not in json.dumps(admin)


async def test_the_admin_readyz_of_a_worker_names_its_consumers(
    start_system: StartSystem,
) -> None:
    system = await start_system([Recorder("log", ["#"])], ingress=False, admin=True)
    status, answer = await _answer(system.http, system.admin_url("worker", "/readyz"))
    assert status == 200
    assert answer == {
        "status": "ready",
        "worker": True,
        "roles": {
            "worker": {
                "ready": True,
                "broker": True,
                "broker_blocked": None,
                "consumers": {"log": True},
            }
        },
    }


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
