"""A real Prometheus scrapes a running system with the deployment's own jobs and rules: every
dashboard and alert expression has data, and the "something parked" alert fires for the
parked events."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from shared.settings import Settings
from tests.support.broker import BrokerClient
from tests.support.http import status_of
from tests.support.processes import RoleProcess, free_port
from tests.support.prometheus import PrometheusServer, config_for
from tests.support.promql import alert_rules, dashboard_expressions, measured, substitute
from tests.support.waiting import eventually

pytestmark = [pytest.mark.broker, pytest.mark.timeout(240)]

SEEDS = Path(__file__).resolve().parents[2] / "workers" / "testing" / "seeds"
OCR = (SEEDS / "ocr.1.xml").read_bytes()  # routed to steady and failing
WATERMARK = (SEEDS / "digital-watermark.1.xml").read_bytes()  # no consumer: unrouted
UNPARSABLE = b"<Response><JobsDetail>"


async def _ready(http: aiohttp.ClientSession, port: int) -> bool:
    return await status_of(http, f"http://127.0.0.1:{port}/readyz") == 200


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_prometheus_has_data_for_every_dashboard_and_alert_expression_and_alerts_on_parked(
    settings: Settings, broker: BrokerClient, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    rabbitmq_metrics = f"{URL(settings.broker_url).host}:15692"
    assert await status_of(http, f"http://{rabbitmq_metrics}/metrics") == 200, (
        f"RabbitMQ's metrics do not answer on {rabbitmq_metrics}: "
        "rabbitmq-plugins enable rabbitmq_prometheus (make test-setup does it for a local broker)"
    )
    broker.track(["steady", "failing"], [0.2])
    port, admin = free_port(), {role: free_port() for role in ("ingress", "router", "worker")}
    console = free_port()  # the console's own port serves its metrics
    consumers = ("--consumer", "tests.support.observed_consumers")
    spool = ("--spool-dir", str(tmp_path / "spool"))
    roles = [
        await RoleProcess.start(
            "worker", settings, *consumers, "--health-port", str(admin["worker"])
        ),
        await RoleProcess.start("router", settings, "--health-port", str(admin["router"])),
        await RoleProcess.start(
            "ingress", settings, "--port", str(port), "--health-port", str(admin["ingress"]), *spool
        ),
        await RoleProcess.start("console", settings, *consumers, "--console-port", str(console)),
    ]
    prometheus: PrometheusServer | None = None
    try:
        for role_port in admin.values():
            await eventually(partial(_ready, http, role_port), timeout=30, interval=0.1)
        healthz = f"http://127.0.0.1:{console}/healthz"
        await eventually(partial(_answers, http, healthz), timeout=30, interval=0.1)
        targets = {f"callback-fanout-{role}": [f"127.0.0.1:{p}"] for role, p in admin.items()}
        targets["callback-fanout-console"] = [f"127.0.0.1:{console}"]
        targets |= {"rabbitmq": [rabbitmq_metrics], "rabbitmq-queues": [rabbitmq_metrics]}
        prometheus = await PrometheusServer.start(config_for(targets, prefix=settings.prefix))
        await _every_target_up(prometheus)  # scraped once before the flow: rates see it all

        for body in (OCR, OCR, OCR, WATERMARK, UNPARSABLE, UNPARSABLE):
            async with http.post(f"http://127.0.0.1:{port}/callbacks", data=body) as response:
                assert response.status == 200, await response.text()
        t = broker.topology
        parked = {t.unparsed: 2, t.unrouted: 1, t.consumer("failing", [0.2]).dead: 3}
        for queue, count in parked.items():
            await eventually(partial(broker.count_is, queue, count), timeout=30)

        await _prometheus_counts_the_flow(prometheus)
        await _parked_alert_fires_for(prometheus, parked)
        await _every_expression_has_data(prometheus, settings.prefix)
        for rule in await prometheus.rules():
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
    finally:
        if prometheus is not None:
            await prometheus.stop()
        for role in roles:
            await role.close()


async def _answers(http: aiohttp.ClientSession, url: str) -> bool:
    return await status_of(http, url) == 200


async def _every_target_up(prometheus: PrometheusServer) -> None:
    async def all_up() -> bool:
        targets = await prometheus.targets()
        return bool(targets) and all(target["health"] == "up" for target in targets)

    try:
        await eventually(all_up, timeout=20, interval=0.5)
    except AssertionError:
        down = [(t["scrapeUrl"], t["lastError"]) for t in await prometheus.targets()]
        raise AssertionError(f"targets not up: {down}") from None


async def _prometheus_counts_the_flow(prometheus: PrometheusServer) -> None:
    """What Prometheus scraped adds up to the flow: 6 answered 200, 4 bodies routed and 2
    parked by the router, 3 events handled by ``steady``, 3 retried then parked by ``failing``."""
    expected = {
        'sum(callback_fanout_ingress_requests_total{outcome=~"accepted|spooled"})': 6.0,
        'sum(callback_fanout_router_bodies_total{outcome="routed"})': 4.0,
        'sum(callback_fanout_router_bodies_total{outcome="parked"})': 2.0,
        'sum(callback_fanout_consumer_events_total{consumer="steady",outcome="handled"})': 3.0,
        'sum(callback_fanout_consumer_events_total{consumer="failing",outcome="retried"})': 3.0,
        'sum(callback_fanout_consumer_events_total{consumer="failing",outcome="parked"})': 3.0,
    }
    seen: dict[str, float | None] = {}

    async def counted() -> bool:
        for expression in expected:
            samples = await prometheus.query(expression)
            seen[expression] = float(samples[0]["value"][1]) if samples else None
        return seen == expected

    try:
        await eventually(counted, timeout=20, interval=0.5)
    except AssertionError:
        raise AssertionError(f"scraped {seen}, expected {expected}") from None


async def _parked_alert_fires_for(prometheus: PrometheusServer, parked: dict[str, int]) -> None:
    """``CallbackFanoutSomethingParked`` fires once per parking queue, with its count."""

    async def firing() -> dict[str, float]:
        return {
            alert["labels"]["queue"]: float(alert["value"])
            for alert in await prometheus.alerts()
            if alert["labels"]["alertname"] == "CallbackFanoutSomethingParked"
            and alert["state"] == "firing"
        }

    expected = {queue: float(count) for queue, count in parked.items()}

    async def fires() -> bool:
        return await firing() == expected

    try:
        await eventually(fires, timeout=45, interval=0.5)
    except AssertionError:
        raise AssertionError(f"firing {await firing()}, expected {expected}") from None


async def _every_expression_has_data(prometheus: PrometheusServer, prefix: str) -> None:
    """Each dashboard query (Grafana's variables filled in) and what each alert rule measures
    gives at least one finite sample."""
    variables = {"__rate_interval": "1m", "prefix": prefix}
    expressions = {
        title: substitute(expr, variables) for title, expr in dashboard_expressions().items()
    }
    expressions |= {name: measured(rule["expr"]) for name, rule in alert_rules().items()}
    missing: dict[str, str] = {}

    async def all_have_data() -> bool:
        missing.clear()
        for title, expression in expressions.items():
            samples = await prometheus.query(expression)
            if not any(math.isfinite(float(s["value"][1])) for s in samples):
                missing[title] = expression
        return not missing

    try:
        await eventually(all_have_data, timeout=30, interval=1)
    except AssertionError:
        listed = "\n".join(f"  {title}: {expr}" for title, expr in missing.items())
        raise AssertionError(f"no data for:\n{listed}") from None
