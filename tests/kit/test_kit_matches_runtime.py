"""The kit reports what the runtime does: the same consumer, in the kit and on the broker."""

from __future__ import annotations

import pytest

from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.system import Recorder
from tests.support.waiting import eventually
from workers.testing import ConsumerHarness, parse_body

pytestmark = pytest.mark.broker

OCR = (SEEDS / "ocr.1.xml").read_bytes()


async def test_a_failing_consumer_is_parked_on_the_broker_as_the_kit_says(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    in_kit = Recorder("kit-twin", ["TaskFinish.#"], always_fail=True, max_attempts=3)
    on_broker = Recorder("kit-twin", ["TaskFinish.#"], always_fail=True, max_attempts=3)
    system = await start_system([on_broker])
    harness = ConsumerHarness(in_kit.loaded(), settings=system.settings)
    [event] = parse_body(OCR)
    outcomes = await harness.run(event)

    assert (await system.post(OCR)).status == 200
    queues = broker.topology.consumer("kit-twin", system.settings.retry_delays)
    await eventually(lambda: broker.count_is(queues.dead, 1), timeout=20)
    [parked] = await broker.take_all(queues.dead)
    headers = parked.headers or {}

    assert [o.kind for o in outcomes] == ["retried", "retried", "parked"]
    assert [o.delay for o in outcomes[:2]] == system.settings.retry_delays  # 0.2 then 0.4
    assert headers["x-attempts"] == outcomes[-1].attempts == 3
    assert headers["x-last-error"] == outcomes[-1].reason
    assert len(on_broker.calls) == len(in_kit.calls) == 3
