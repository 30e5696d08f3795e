"""The kit reports what the runtime does: the same consumer, in the kit and on the broker."""

from __future__ import annotations

import pytest
import structlog

from shared.settings import Settings
from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.system import Recorder, RunningSystem
from tests.support.waiting import eventually
from workers import CallbackEvent, Retry, consumer
from workers.consumer import LoadedConsumer
from workers.testing import ConsumerHarness, parse_body

pytestmark = pytest.mark.broker

OCR = (SEEDS / "ocr.1.xml").read_bytes()
OTHER = (SEEDS / "translation.1.xml").read_bytes()  # another job: another dedupe key


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


async def test_give_up_is_parked_at_once_on_the_broker_as_the_kit_says(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    in_kit = Recorder("kit-twin", ["TaskFinish.#"], give_up=True, max_attempts=3)
    on_broker = Recorder("kit-twin", ["TaskFinish.#"], give_up=True, max_attempts=3)
    system = await start_system([on_broker])
    [event] = parse_body(OCR)
    outcomes = await ConsumerHarness(in_kit.loaded(), settings=system.settings).run(event)

    assert (await system.post(OCR)).status == 200
    queues = broker.topology.consumer("kit-twin", system.settings.retry_delays)
    await eventually(lambda: broker.count_is(queues.dead, 1), timeout=20)
    [parked] = await broker.take_all(queues.dead)
    headers = parked.headers or {}

    assert [(o.kind, o.gave_up) for o in outcomes] == [("parked", True)]
    assert headers["x-attempts"] == outcomes[0].attempts == 1  # no retry at all
    assert headers["x-last-error"] == outcomes[0].reason
    assert len(on_broker.calls) == len(in_kit.calls) == 1


async def test_a_handler_timeout_is_retried_then_parked_on_the_broker_as_the_kit_says(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    in_kit, on_broker = (
        Recorder("kit-twin", ["TaskFinish.#"], delay=1.0, timeout=0.2, max_attempts=2)
        for _ in range(2)
    )
    system = await start_system([on_broker])
    [event] = parse_body(OCR)
    outcomes = await ConsumerHarness(in_kit.loaded(), settings=system.settings).run(event)

    assert (await system.post(OCR)).status == 200
    queues = broker.topology.consumer("kit-twin", system.settings.retry_delays)
    await eventually(lambda: broker.count_is(queues.dead, 1), timeout=20)
    [parked] = await broker.take_all(queues.dead)
    headers = parked.headers or {}

    assert [(o.kind, o.timed_out) for o in outcomes] == [("retried", True), ("parked", True)]
    assert outcomes[-1].reason == "timed out after 0.2s"
    assert headers["x-attempts"] == outcomes[-1].attempts == 2
    assert headers["x-last-error"] == outcomes[-1].reason
    assert len(on_broker.calls) == len(in_kit.calls) == 2
    assert on_broker.events == in_kit.events == []


def retrying_after(name: str, seconds: float, calls: list[int]) -> LoadedConsumer:
    """A consumer that asks, the first time, to be tried again in ``seconds``."""

    @consumer(name=name, routes=["TaskFinish.#"], retry_delays=[0.2, 30.0])
    async def handle(event: CallbackEvent) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise Retry("not yet", delay=seconds)

    return LoadedConsumer.from_target(handle, f"test:{name}")


async def test_retry_with_a_delay_waits_in_the_delay_queue_the_kit_names(
    broker: BrokerClient, settings: Settings
) -> None:
    in_kit: list[int] = []
    on_broker: list[int] = []
    broker.track(["kit-twin"], [0.2, 30.0])
    system = await RunningSystem.start(settings, [retrying_after("kit-twin", 30.0, on_broker)])
    try:
        [event] = parse_body(OCR)
        harness = ConsumerHarness(retrying_after("kit-twin", 30.0, in_kit), settings=settings)
        [first, *_] = await harness.run(event)

        assert (await system.post(OCR)).status == 200
        queues = broker.topology.consumer("kit-twin", [0.2, 30.0])
        waits_in = queues.delay_queue(30.0)
        await eventually(lambda: broker.count_is(waits_in, 1), timeout=20)
        assert await broker.count(queues.delay_queue(0.2)) == 0  # not the policy's first step
    finally:
        await system.stop()
    assert (first.kind, first.delay) == ("retried", 30.0)
    assert on_broker == [1]  # waiting, not tried again yet


async def test_a_deduplicating_consumer_drops_the_same_event_and_takes_another_as_the_kit_says(
    start_system: StartSystem, settings: Settings
) -> None:
    chosen = settings.model_copy(update={"dedupe_window": 60.0})
    in_kit = Recorder("kit-twin", ["TaskFinish.#"], dedupe=True)
    on_broker = Recorder("kit-twin", ["TaskFinish.#"], dedupe=True)
    system = await start_system([on_broker], settings_=chosen)
    [ocr] = parse_body(OCR)
    [other] = parse_body(OTHER)
    harness = ConsumerHarness(in_kit.loaded(), settings=chosen)
    kinds = [(await harness.deliver(e)).kind for e in (ocr, ocr, other)]

    with structlog.testing.capture_logs() as logs:
        for body in (OCR, OCR, OTHER):
            assert (await system.post(body)).status == 200
        await eventually(lambda: len(on_broker.calls) == 2)
        await eventually(lambda: any(e["event"] == "duplicate dropped" for e in logs))

    assert kinds == ["handled", "duplicate", "handled"]
    assert [e.job_id for e in in_kit.events] == [ocr.job_id, other.job_id]
    assert {e.job_id for e in on_broker.events} == {ocr.job_id, other.job_id}
    assert ocr.job_id != other.job_id
