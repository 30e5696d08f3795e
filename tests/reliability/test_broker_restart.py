"""The broker itself restarted (``rabbitmqctl stop_app`` / ``start_app``) under load.

Needs ``rabbitmqctl`` for the broker under test (the CI machine has it). The broker is always
started again in a ``finally`` and waited for, since other test runs share it.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator

import aio_pika
import pytest

from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.system import Recorder
from tests.support.waiting import eventually

pytestmark = [pytest.mark.broker, pytest.mark.fault]

OCR = (SEEDS / "ocr.1.xml").read_bytes()


def rabbitmqctl(*args: str, timeout: float = 120) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, timeout=timeout, capture_output=True)


@pytest.fixture
def broker_control(amqp_url: str) -> Iterator[None]:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed: the connection-cut test covers this path")
    if "127.0.0.1" not in amqp_url and "localhost" not in amqp_url:
        pytest.skip("the broker under test is not this machine's")
    try:
        yield
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup", "--timeout", "120", timeout=150)


async def test_a_broker_restart_under_load_loses_nothing_and_every_role_comes_back(
    broker_control: None, start_system: StartSystem, broker: BrokerClient
) -> None:
    everything = Recorder("everything", ["TaskFinish.#"])
    system = await start_system([everything])
    accepted: list[str] = []
    refused = 0

    async def post_some(n: int) -> None:
        nonlocal refused
        for _ in range(n):
            response = await system.post(OCR)
            if response.status == 200:
                accepted.append(response.headers["X-Request-Id"])
            else:
                assert response.status == 503
                assert response.headers["Retry-After"]
                refused += 1

    await post_some(30)
    await asyncio.to_thread(rabbitmqctl, "stop_app")
    try:
        await post_some(5)
    finally:
        await asyncio.to_thread(rabbitmqctl, "start_app")
        await asyncio.to_thread(rabbitmqctl, "await_startup", "--timeout", "120")

    async def accepted_again() -> bool:
        response = await system.post(OCR)
        if response.status == 200:
            accepted.append(response.headers["X-Request-Id"])
        return response.status == 200

    await eventually(accepted_again, timeout=60, interval=0.5)
    await post_some(30)

    t = broker.topology
    queue = t.consumer("everything", system.settings.retry_delays).main

    async def consuming_again() -> bool:
        try:
            raw = await t.declare_queue(broker.channel, t.raw)
            mine = await t.declare_queue(broker.channel, queue)
        except (aio_pika.exceptions.AMQPError, RuntimeError):
            return False  # the test's own connection is still coming back
        return bool(raw.declaration_result.consumer_count) and bool(
            mine.declaration_result.consumer_count
        )

    await eventually(consuming_again, timeout=60, interval=0.5)
    await eventually(
        lambda: {e.envelope.request_id for e in everything.events if e.envelope} >= set(accepted),
        timeout=60,
    )
    delivered = {e.envelope.request_id for e in everything.events if e.envelope}
    print(
        f"\nbroker restart: accepted={len(accepted)} delivered={len(delivered & set(accepted))} "
        f"refused={refused} duplicates={len(everything.events) - len(delivered)}"
    )
    assert refused == 5
    assert delivered == set(accepted)
