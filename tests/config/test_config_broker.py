"""Consumers declared in the configuration file run on the real broker like any other."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from shared.settings import Settings
from tests.config.support import TestSink
from tests.conftest import SEEDS
from tests.support.broker import BrokerClient
from tests.support.system import RunningSystem
from tests.support.waiting import eventually
from workers.loader import consumers_of

pytestmark = pytest.mark.broker

SECRET = "whsec_Y29uZmlndXJlZC1vbi10aGUtYnJva2Vy"
OCR = (SEEDS / "ocr.1.xml").read_bytes()
TRANSLATION = (SEEDS / "translation.1.json").read_bytes()


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fanout.toml"
    path.write_text(text)
    return path


async def test_configured_consumers_receive_the_events_their_routes_match(
    tmp_path: Path, settings: Settings, broker: BrokerClient, sink_builtin: TestSink
) -> None:
    path = _config(
        tmp_path,
        """
[consumers.billing]
use = "test-sink"
routes = ["TaskFinish.ImageOCR.*"]
url = "https://billing.internal/ci-results"
secret = { env = "BILLING_WEBHOOK_SECRET" }

[consumers.audit]
use = "log"
routes = ["TaskFinish.Translation.#"]
""",
    )
    configured = settings.model_copy(update={"config": path})
    consumers = consumers_of(configured, {"BILLING_WEBHOOK_SECRET": SECRET})
    broker.track(["billing", "audit"], settings.retry_delays)
    system = await RunningSystem.start(configured, consumers)
    try:
        with structlog.testing.capture_logs() as logs:
            assert (await system.post(OCR)).status == 200
            assert (await system.post(TRANSLATION, "application/json")).status == 200
            await eventually(lambda: len(sink_builtin.calls) == 1)
            await eventually(lambda: any(e["event"] == "event" for e in logs))
    finally:
        await system.stop()
    [(name, options, event)] = sink_builtin.calls
    assert name == "billing"
    assert options.secret.get_secret_value() == SECRET
    assert event.job_id == "a3c193f288b2c11eeb60f39de2f86f409"
    assert event.envelope is not None
    assert event.envelope.raw_body == OCR
    [logged] = [e for e in logs if e["event"] == "event"]
    assert logged["routing_key"] == "TaskFinish.Translation.Success"
    assert logged["job_id"] == "ac34be3aa0bf411ed9ce39d7cc972e427"
    assert SECRET not in repr(logs)
    for consumer in ("billing", "audit"):  # each its own queue, both empty: acked
        queues = broker.topology.consumer(consumer, settings.retry_delays)
        assert await broker.count(queues.main) == 0
        assert await broker.count(queues.dead) == 0


async def test_a_configured_policy_is_the_one_the_runtime_applies(
    tmp_path: Path, settings: Settings, broker: BrokerClient, sink_builtin: TestSink
) -> None:
    path = _config(
        tmp_path,
        """
[consumers.flaky]
use = "test-sink"
routes = ["TaskFinish.#"]
url = "https://flaky.internal/"
secret = { env = "FLAKY_SECRET" }
fail = true
max_attempts = 2
retry_delays = [0.3]
""",
    )
    configured = settings.model_copy(update={"config": path})
    broker.track(["flaky"], [0.3])
    system = await RunningSystem.start(
        configured, consumers_of(configured, {"FLAKY_SECRET": SECRET})
    )
    try:
        assert (await system.post(OCR)).status == 200
        dead = broker.topology.consumer("flaky", [0.3]).dead
        await eventually(lambda: broker.count_is(dead, 1), timeout=20)
    finally:
        await system.stop()
    [parked] = await broker.take_all(dead)
    headers = parked.headers or {}
    assert headers["x-attempts"] == 2
    assert headers["x-last-error"] == "RuntimeError: sink fails on purpose"
    assert len(sink_builtin.calls) == 2
