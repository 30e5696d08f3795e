"""``--event-batch-max``: the most events the router frames into one event message."""

from __future__ import annotations

import pytest

from shared.settings import Settings
from shared.wire.events import entries_of
from shared.wire.raw import RawMeta, batch_message
from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.system import Recorder
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

OCR = (SEEDS / "ocr.1.xml").read_bytes()


@pytest.mark.parametrize(("batch_max", "sizes"), [(2, [1, 2, 2]), (100, [5])])
async def test_the_five_events_of_one_raw_batch_leave_in_messages_of_at_most_the_max(
    start_system: StartSystem,
    broker: BrokerClient,
    settings: Settings,
    batch_max: int,
    sizes: list[int],
) -> None:
    chosen = settings.model_copy(update={"event_batch_max": batch_max})
    system = await start_system([Recorder("held", ["TaskFinish.#"])], settings_=chosen)
    assert system.worker is not None
    await system.worker.stop()  # its queue stays bound: the event messages wait there
    bodies = [
        (RawMeta(f"req-{i}", 1_764_547_200.0 + i, "application/xml", "127.0.0.1"), OCR)
        for i in range(5)
    ]
    await broker.channel.default_exchange.publish(
        batch_message(bodies), routing_key=broker.topology.raw
    )  # the five bodies one group commit of the ingress would make
    queue = broker.topology.consumer("held", chosen.retry_delays).main
    await eventually(lambda: broker.count_is(queue, len(sizes)))
    framed = await broker.take_all(queue)
    assert sorted(len(entries_of(m.content_type, m.body)) for m in framed) == sizes
