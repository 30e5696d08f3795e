"""Metrics live on the admin port of every role (in `run`, one for the process), never on the
public callback port; `--no-metrics` counts and serves nothing. The admin port's /readyz
gives every role's facts; the callback port's only says ready."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from ingress.metrics import OUTCOMES
from shared.settings import Settings
from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.http import status_of
from tests.support.metrics import scrape
from tests.support.processes import RoleProcess, free_port
from tests.support.proxy import CuttableProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

OCR = (SEEDS / "ocr.1.xml").read_bytes()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_the_callback_port_serves_callbacks_and_health_but_no_metrics(
    start_system: StartSystem, http: aiohttp.ClientSession
) -> None:
    system = await start_system(router=False, worker=False, admin=True)
    assert system.ingress is not None
    public = f"http://127.0.0.1:{system.ingress.port}"
    assert await status_of(http, f"{public}/metrics") == 404
    assert await status_of(http, f"{public}/healthz") == 200
    assert await status_of(http, f"{public}/readyz") == 200
    assert await status_of(http, system.admin_url("ingress", "/healthz")) == 200
    assert await status_of(http, system.admin_url("ingress", "/readyz")) == 200
    metrics = await scrape(http, system.admin_url("ingress"))
    # every outcome is there from the start, at 0
    assert metrics.series("callback_fanout_ingress_requests_total") == {
        frozenset({("outcome", outcome)}): 0 for outcome in OUTCOMES
    }


async def test_without_metrics_nothing_is_counted_or_served(
    start_system: StartSystem, settings: Settings, http: aiohttp.ClientSession
) -> None:
    quiet = settings.model_copy(update={"metrics": False})
    system = await start_system(settings_=quiet, router=False, worker=False, admin=True)
    assert system.ingress is not None
    assert system.ingress.metrics is None
    assert (await system.post(OCR)).status == 200
    assert await status_of(http, system.admin_url("ingress", "/metrics")) == 404
    assert await status_of(http, system.admin_url("ingress", "/readyz")) == 200


async def test_a_spooled_body_is_counted_and_the_spool_gauges_show_it_until_forwarded(
    start_system: StartSystem,
    broker: BrokerClient,
    broker_proxy_settings: tuple[Settings, CuttableProxy],
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    proxied, proxy = broker_proxy_settings
    spooling = proxied.model_copy(update={"spool_dir": tmp_path / "spool"})
    system = await start_system(settings_=spooling, router=False, worker=False, admin=True)
    assert system.ingress is not None
    ingress = system.ingress
    url = system.admin_url("ingress")
    await eventually(lambda: ingress.broker_connected, timeout=30)  # the spool is ready first
    proxy.cut()
    await eventually(lambda: not ingress.broker_connected)
    assert (await system.post(OCR)).status == 200

    away = await scrape(http, url)
    assert away.value("callback_fanout_ingress_requests_total", outcome="spooled") == 1
    assert away.value("callback_fanout_ingress_requests_total", outcome="accepted") == 0
    assert away.value("callback_fanout_spool_records") == 1
    assert away.value("callback_fanout_spool_bytes") > len(OCR)
    assert 0 < away.value("callback_fanout_spool_oldest_seconds") < 30
    assert away.value("callback_fanout_broker_connected", role="ingress") == 0

    proxy.restore()
    await eventually(lambda: broker.count_is(broker.topology.raw, 1), timeout=30)

    async def forwarded() -> bool:
        return (await scrape(http, url)).value("callback_fanout_spool_records") == 0

    await eventually(forwarded, timeout=30)
    back = await scrape(http, url)
    assert back.value("callback_fanout_spool_oldest_seconds") == 0
    assert back.value("callback_fanout_ingress_batch_bodies_count") == 1  # the forwarded one
    assert back.value("callback_fanout_broker_connected", role="ingress") == 1
    [message] = await broker.take_raw()
    assert message.body == OCR


@pytest.mark.parametrize("role", ["ingress", "run"])
async def test_a_role_run_as_a_command_serves_metrics_on_its_admin_port_only(
    settings: Settings,
    broker: BrokerClient,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    role: str,
) -> None:
    broker.track(["log"], settings.retry_delays)
    public, admin = free_port(), free_port()
    extra = ["--consumer", "log", "--spool-dir", str(tmp_path)] if role == "run" else []
    process = await RoleProcess.start(
        role, settings, "--host", "127.0.0.1", "--port", str(public),
        "--health-port", str(admin), *extra,
    )  # fmt: skip
    roles = ["ingress", "router", "worker"] if role == "run" else ["ingress"]
    metrics = f"http://127.0.0.1:{admin}/metrics"

    async def ready() -> bool:
        return await status_of(http, f"http://127.0.0.1:{admin}/readyz") == 200

    try:
        await eventually(ready, timeout=30, interval=0.1)
        up = await scrape(http, metrics)
        assert up.series("callback_fanout_broker_connected") == {
            frozenset({("role", name)}): 1 for name in roles
        }
        assert await status_of(http, f"http://127.0.0.1:{public}/metrics") == 404
        async with http.get(f"http://127.0.0.1:{admin}/readyz") as response:
            told = await response.json()
        assert {name: told[name] for name in roles} == dict.fromkeys(roles, True)
        assert sorted(told["roles"]) == sorted(roles)
        assert told["roles"]["ingress"]["auth"] == "open"  # the details are the admin port's
        async with http.get(f"http://127.0.0.1:{public}/readyz") as response:
            assert (response.status, await response.json()) == (200, {"ready": True})
        async with http.post(f"http://127.0.0.1:{public}/callbacks", data=OCR) as response:
            assert response.status == 200
        if role == "run":

            async def handled() -> bool:
                counts = await scrape(http, metrics)
                events = "callback_fanout_consumer_events_total"
                return counts.value(events, consumer="log", outcome="handled") == 1

            await eventually(handled, timeout=30)
        after = await scrape(http, metrics)
        assert after.value("callback_fanout_ingress_requests_total", outcome="accepted") == 1
        if role == "run":
            routed = after.value("callback_fanout_router_bodies_total", outcome="routed")
            assert routed == 1
        else:
            assert not after.series("callback_fanout_router_bodies_total")
    finally:
        await process.close()
