"""What the consumer runtime does with a handler that hangs, gives up, or holds resources."""

from __future__ import annotations

import pytest

from shared.settings import Settings
from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.system import Recorder, RunningSystem
from tests.support.waiting import eventually
from workers import CallbackEvent, Consumer, consumer
from workers.consumer import LoadedConsumer

pytestmark = pytest.mark.broker

OCR = (SEEDS / "ocr.1.xml").read_bytes()


async def _dead_letters(broker: BrokerClient, settings: Settings, name: str) -> bool:
    """True once the consumer's dead queue holds a message."""
    return await broker.count(broker.topology.consumer(name, settings.retry_delays).dead) > 0


async def test_a_handler_that_hangs_is_cut_off_after_its_timeout_and_parked_after_its_attempts(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    hangs = Recorder("hangs", ["TaskFinish.#"], delay=60.0, timeout=0.3, max_attempts=2)
    system = await start_system([hangs])
    assert (await system.post(OCR)).status == 200
    await eventually(lambda: _dead_letters(broker, system.settings, "hangs"), timeout=20)
    dead = broker.topology.consumer("hangs", system.settings.retry_delays).dead
    [parked] = await broker.take_all(dead)
    assert (parked.headers or {})["x-last-error"] == "timed out after 0.3s"
    assert len(hangs.calls) == 2
    assert hangs.events == []


async def test_a_consumer_that_gives_up_is_parked_at_once_without_retries(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    quitter = Recorder("quitter", ["TaskFinish.#"], give_up=True, max_attempts=5)
    system = await start_system([quitter])
    assert (await system.post(OCR)).status == 200
    await eventually(lambda: _dead_letters(broker, system.settings, "quitter"))
    dead = broker.topology.consumer("quitter", system.settings.retry_delays).dead
    [parked] = await broker.take_all(dead)
    headers = parked.headers or {}
    assert headers["x-attempts"] == 1
    assert headers["x-last-error"] == "GiveUp: quitter gives up on purpose"
    assert len(quitter.calls) == 1


async def test_a_class_consumer_gets_startup_before_its_first_event_and_shutdown_at_stop(
    settings: Settings, broker: BrokerClient
) -> None:
    journal: list[str] = []

    @consumer(name="with-hooks", routes=["TaskFinish.#"])
    class WithHooks(Consumer):
        async def startup(self) -> None:
            journal.append("startup")

        async def shutdown(self) -> None:
            journal.append("shutdown")

        async def handle(self, event: CallbackEvent) -> None:
            journal.append(f"handle {event.job_id}")

    broker.track(["with-hooks"], settings.retry_delays)
    system = await RunningSystem.start(settings, [LoadedConsumer.from_target(WithHooks, "test")])
    try:
        assert (await system.post(OCR)).status == 200
        await eventually(lambda: len(journal) == 2)
    finally:
        await system.stop()
    assert journal == ["startup", "handle a3c193f288b2c11eeb60f39de2f86f409", "shutdown"]


async def test_a_body_that_crashes_the_parser_is_parked_with_the_reason_not_retried_forever(
    start_system: StartSystem, broker: BrokerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.router.service
    from shared.callbacks.parser import parse_callback as real

    def crashing(body: bytes, **kwargs: object) -> list[CallbackEvent]:
        if b"CRASH" in body:
            raise MemoryError("the parser blew up")
        return real(body, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(workers.router.service, "parse_callback", crashing)
    everything = Recorder("everything", ["#"])
    system = await start_system([everything])
    poison = OCR.replace(b"<Message/>", b"<Message>CRASH</Message>")
    assert (await system.post(poison)).status == 200
    assert (await system.post(OCR)).status == 200  # the router is not stuck on the poison
    await eventually(lambda: len(everything.events) == 1)
    await eventually(lambda: broker.count_is(broker.topology.unparsed, 1))
    [parked] = await broker.take_all(broker.topology.unparsed)
    assert parked.body == poison
    assert "parser crashed: MemoryError('the parser blew up')" in str(
        (parked.headers or {})["x-parse-error"]
    )
