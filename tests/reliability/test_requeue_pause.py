"""A delivery whose publish fails is handed back after a pause, not at once."""

from __future__ import annotations

import asyncio
import itertools

import aio_pika
import pytest

from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.system import Recorder
from tests.support.waiting import eventually
from workers import settling as requeue
from workers.router.outbox import Outbox, _Group
from workers.runtime.worker import ConsumerRunner

pytestmark = pytest.mark.broker


async def test_a_body_whose_events_are_refused_comes_back_after_a_pause_and_is_routed(
    start_system: StartSystem, broker: BrokerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three refusals in a row cost three deliveries spread over the pauses, and the body is
    routed once the broker takes its events: nothing parked, the delivery limit untouched."""
    monkeypatch.setattr(requeue, "REQUEUE_PAUSE", 0.5)
    real_send = Outbox._send
    refusals: list[float] = []

    async def refusing(self: Outbox, group: _Group) -> None:
        if len(refusals) < 3:
            refusals.append(asyncio.get_running_loop().time())
            group.done.set_exception(RuntimeError("refused on purpose"))
            return
        await real_send(self, group)

    monkeypatch.setattr(Outbox, "_send", refusing)
    everything = Recorder("everything", ["#"])
    system = await start_system([everything])
    assert (await system.post((SEEDS / "ocr.1.xml").read_bytes())).status == 200
    await eventually(lambda: len(everything.events) == 1, timeout=15)
    gaps = [later - earlier for earlier, later in itertools.pairwise(refusals)]
    assert len(refusals) == 3
    assert all(gap >= 0.45 for gap in gaps), gaps
    assert await broker.count(broker.topology.unparsed) == 0


async def test_a_worker_hands_back_a_delivery_whose_retry_it_could_not_publish_after_a_second(
    start_system: StartSystem, broker: BrokerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/architecture.md: handed back after a second (the real pause, not a shorter one)."""
    real_publish = ConsumerRunner._publish
    refused: list[str] = []

    async def refusing_once(self: ConsumerRunner, copy: aio_pika.Message, queue: str) -> None:
        if not refused:
            refused.append(queue)
            raise RuntimeError("refused on purpose")
        await real_publish(self, copy, queue)

    monkeypatch.setattr(ConsumerRunner, "_publish", refusing_once)
    flaky = Recorder("flaky", ["#"], fail_times=1)  # its retry is the publish refused
    system = await start_system([flaky])
    assert (await system.post((SEEDS / "ocr.1.xml").read_bytes())).status == 200
    await eventually(lambda: len(flaky.events) == 1, timeout=15)
    first, second = flaky.calls  # the delivery again, not a retry: that one was refused
    assert refused == [broker.topology.consumer("flaky", system.settings.retry_delays).delays[0][1]]
    assert 1.0 <= second - first < 3.0
