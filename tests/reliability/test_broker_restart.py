"""The broker itself restarted (``rabbitmqctl stop_app`` / ``start_app``) under load.

The broker stopped is the broker under test, found from the broker itself (the node that
holds the test's own connection, or the testcontainers container), never from the URL's
text. Where it cannot be controlled (no ``rabbitmqctl``, or one that reaches another broker)
the test fails and says why; it is never skipped. The broker is always started again in a
``finally`` and waited for, since other test runs share it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest

from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.broker_control import BrokerControl
from tests.support.load import Senders
from tests.support.system import Recorder
from tests.support.waiting import eventually

pytestmark = [pytest.mark.broker, pytest.mark.fault]

OCR = (SEEDS / "ocr.1.xml").read_bytes()
GARBAGE = b"<Response><JobsDetail>"  # parks in unparsed


@pytest.fixture
async def restartable(broker_control: BrokerControl) -> AsyncIterator[BrokerControl]:
    """The broker under test, started again (and awaited) however the test ends."""
    try:
        yield broker_control
    finally:
        await asyncio.to_thread(broker_control.rabbitmqctl, "start_app")
        await asyncio.to_thread(
            broker_control.rabbitmqctl, "await_startup", "--timeout", "120", timeout=150
        )


async def test_a_broker_restart_under_load_loses_nothing_and_every_role_comes_back(
    restartable: BrokerControl, start_system: StartSystem, broker: BrokerClient
) -> None:
    everything = Recorder("everything", ["TaskFinish.#"])
    system = await start_system([everything])
    senders = Senders(system.post, lambda n: GARBAGE if n % 10 == 9 else OCR, count=32)
    refused_while_stopped = 0
    senders.start()
    try:
        await senders.until_accepted(40)
        # Stopped under load: dozens of callbacks are in flight while the broker goes.
        await asyncio.to_thread(restartable.rabbitmqctl, "stop_app")
        try:
            answers = await asyncio.gather(*(system.post(OCR) for _ in range(5)))
            refused_while_stopped = sum(
                a.status == 503 and bool(a.headers.get("Retry-After")) for a in answers
            )
        finally:
            await asyncio.to_thread(restartable.rabbitmqctl, "start_app")
            await asyncio.to_thread(
                restartable.rabbitmqctl, "await_startup", "--timeout", "120", timeout=150
            )
        # Accepted again on its own, under the same load.
        await senders.until_accepted(len(senders.accepted) + 40, timeout=60)
    finally:
        await senders.stop()
    accepted = set(senders.accepted)

    t = broker.topology
    queue = t.consumer("everything", system.settings.retry_delays).main

    async def consuming_again() -> bool:
        try:
            raw = await t.declare_queue(broker.channel, t.raw)
            mine = await t.declare_queue(broker.channel, queue)
        except (aio_pika.exceptions.AMQPError, RuntimeError):
            return False  # the test's own connection is still coming back
        counts = (raw.declaration_result.consumer_count, mine.declaration_result.consumer_count)
        return counts == (1, 1)  # exactly one each: a role that came back twice consumes twice

    await eventually(consuming_again, timeout=60, interval=0.5)
    parked: list[str] = []

    async def all_accounted() -> bool:
        parked.extend(str(m.message_id) for m in await broker.take_all(t.unparsed))
        delivered = {e.envelope.request_id for e in everything.events if e.envelope}
        return accepted <= delivered | set(parked)

    await eventually(all_accounted, timeout=60, interval=0.2)
    delivered = {e.envelope.request_id for e in everything.events if e.envelope}
    print(
        f"\nbroker restart ({restartable.name}): accepted={len(accepted)} "
        f"delivered={len(delivered & accepted)} parked={len(set(parked) & accepted)} "
        f"refused={senders.refused + refused_while_stopped} "
        f"arrived though refused={len((delivered | set(parked)) - accepted)} "
        f"duplicates={len(everything.events) - len(delivered) + len(parked) - len(set(parked))} "
        f"most in flight={senders.max_in_flight}"
    )
    assert senders.unexpected == []
    assert refused_while_stopped == 5  # every callback posted while it was stopped: 503
    assert senders.max_in_flight == 32
    assert len(accepted) == len(senders.accepted)  # request ids are unique
    assert len(accepted) == len(delivered & accepted) + len(set(parked) & accepted)
    # A refused callback may still arrive (its confirm was lost with the broker): never more
    # of them than were refused.
    assert len((delivered | set(parked)) - accepted) <= senders.refused
