"""The event message between router and worker: what consumers see, exactly."""

from __future__ import annotations

import asyncio
import random
import struct

import aio_pika
import pytest

from shared.callbacks.events import CallbackEvent
from shared.callbacks.parser import parse_callback
from shared.settings import Settings
from shared.wire.events import EVENTS_CONTENT_TYPE, encode, entries_of, events_message
from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.system import Recorder, RunningSystem
from tests.support.waiting import eventually
from workers import consumer
from workers.consumer import LoadedConsumer

pytestmark = pytest.mark.broker

OCR_XML = SEEDS / "ocr.1.xml"
WATERMARK_JSON = SEEDS / "digital-watermark.1.json"


def parsed_again(event: CallbackEvent) -> CallbackEvent:
    """The event the router parsed: the same raw body parsed again with the same envelope."""
    envelope = event.envelope
    assert envelope is not None
    events = parse_callback(
        envelope.raw_body,
        content_type=envelope.content_type,
        headers=envelope.headers,
        envelope=envelope,
    )
    return events[event.job_index]


async def test_a_consumer_receives_the_event_the_router_parsed_with_the_raw_body_exact(
    start_system: StartSystem,
) -> None:
    everything = Recorder("everything", ["#"])
    system = await start_system([everything])
    sent = {
        OCR_XML.read_bytes(): "application/xml",
        WATERMARK_JSON.read_bytes(): "application/json",
    }
    for body, content_type in sent.items():
        assert (await system.post(body, content_type)).status == 200
    await eventually(lambda: len(everything.events) == 2)
    for event in everything.events:
        assert event.envelope is not None
        assert event.envelope.raw_body in sent
        assert sent[event.envelope.raw_body] == event.envelope.content_type
        assert event == parsed_again(event)
    assert {type(e.operation).__name__ for e in everything.events} == {
        "ImageOCROperation",
        "DigitalWatermarkOperation",
    }


async def test_an_event_message_carries_the_events_json_and_the_raw_body_beside_it(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    system = await start_system(worker=False)  # nobody bound: the event lands in unrouted
    seed = OCR_XML.read_bytes()
    assert (await system.post(seed)).status == 200
    await eventually(lambda: broker.count_is(broker.topology.unrouted, 1))
    [message] = await broker.take_all(broker.topology.unrouted)
    assert message.content_type == EVENTS_CONTENT_TYPE
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    [entry] = entries_of(message.content_type, message.body)
    assert entry.raw == seed  # byte for byte, no base64
    assert b"raw_body" not in entry.doc
    assert (
        message.body
        == struct.pack(">I", len(entry.doc)) + entry.doc + struct.pack(">I", len(seed)) + seed
    )
    event = entry.event()
    assert event.envelope is not None
    assert event.envelope.raw_body == seed
    assert event == parsed_again(event)
    assert message.message_id == f"{event.envelope.request_id}.0"
    headers = dict(message.headers or {})
    headers.pop("x-delivery-count", None)  # the quorum queue's own
    assert headers == {
        "x-event-count": 1,
        "x-idempotency-key": event.idempotency_key,
        "x-request-id": event.envelope.request_id,
        "x-routing-key": event.routing_key,
    }


async def test_with_the_json_format_an_event_message_is_the_events_json_as_before(
    settings: Settings, start_system: StartSystem, broker: BrokerClient
) -> None:
    json_format = settings.model_copy(update={"event_format": "json"})
    system = await start_system(settings_=json_format, worker=False)
    seed = OCR_XML.read_bytes()
    assert (await system.post(seed)).status == 200
    await eventually(lambda: broker.count_is(broker.topology.unrouted, 1))
    [message] = await broker.take_all(broker.topology.unrouted)
    assert message.content_type == "application/json"
    event = CallbackEvent.model_validate_json(message.body)
    assert event.envelope is not None
    assert event.envelope.raw_body == seed
    assert event == parsed_again(event)
    assert message.message_id == f"{event.envelope.request_id}.0"
    headers = dict(message.headers or {})
    headers.pop("x-delivery-count", None)
    assert headers == {
        "x-idempotency-key": event.idempotency_key,
        "x-request-id": event.envelope.request_id,
        "x-routing-key": event.routing_key,
    }


async def test_events_waiting_together_travel_as_one_message_per_routing_key(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    """Bodies posted at once: fewer messages than events, every event once, keys apart."""
    system = await start_system(worker=False)
    ocr, watermark = OCR_XML.read_bytes(), WATERMARK_JSON.read_bytes()
    bodies = [
        ocr.replace(b"a3c193f288b2c11eeb60f39de2f86f409", f"job{i:03d}".encode())
        if i % 2
        else watermark
        for i in range(40)
    ]
    statuses = await asyncio.gather(*(system.post(body) for body in bodies))
    assert {s.status for s in statuses} == {200}
    unrouted = broker.topology.unrouted
    seen: list[CallbackEvent] = []
    messages: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def all_events_arrived() -> bool:
        for message in await broker.take_all(unrouted):
            messages.append(message)
            for entry in entries_of(message.content_type, message.body):
                event = entry.event()
                assert event.routing_key == (message.headers or {})["x-routing-key"]
                seen.append(event)
        return len(seen) >= len(bodies)

    await eventually(all_events_arrived)
    assert len(seen) == len(bodies)
    assert sorted(e.envelope.raw_body for e in seen if e.envelope) == sorted(bodies)
    assert len(messages) < len(seen)  # they shared messages
    for message in messages:
        count = (message.headers or {})["x-event-count"]
        assert count == len(entries_of(message.content_type, message.body))


async def test_an_event_that_fails_in_a_shared_message_is_retried_alone(
    settings: Settings, broker: BrokerClient
) -> None:
    """Its neighbours are handled once; it comes back alone, then succeeds."""
    calls: dict[str, int] = {}

    @consumer(name="picky", routes=["TaskFinish.#"], retry_delays=[0.2], max_attempts=3)
    async def picky(event: CallbackEvent) -> None:
        calls[event.idempotency_key] = calls.get(event.idempotency_key, 0) + 1
        if event.idempotency_key == "key-3" and calls["key-3"] == 1:
            raise RuntimeError("key-3 fails once")

    broker.track(["picky"], [0.2])
    loaded = LoadedConsumer.from_target(picky, "test:picky")
    system = await RunningSystem.start(settings, [loaded], ingress=False, router=False)
    try:
        [template] = parse_callback(OCR_XML.read_bytes())
        events = [template.model_copy(update={"idempotency_key": f"key-{i}"}) for i in range(6)]
        message = events_message(template.routing_key, [encode(e) for e in events], events[0])
        exchange = await broker.channel.get_exchange(settings.prefix + ".events")
        await exchange.publish(message, routing_key=template.routing_key)
        await eventually(lambda: calls.get("key-3") == 2)
        await asyncio.sleep(0.3)
    finally:
        await system.stop()
    assert calls == {f"key-{i}": 2 if i == 3 else 1 for i in range(6)}
    main = broker.topology.consumer("picky", [0.2]).main
    assert await broker.count(main) == 0


async def test_a_framed_message_that_does_not_unpack_is_parked_whole(
    settings: Settings, broker: BrokerClient
) -> None:
    ocr = Recorder("ocr-whole", ["TaskFinish.#"])
    broker.track([ocr.name], settings.retry_delays)
    system = await RunningSystem.start(settings, [ocr.loaded()], ingress=False, router=False)
    try:
        [event] = parse_callback(OCR_XML.read_bytes())
        good = events_message(event.routing_key, [encode(event)], event)
        broken = aio_pika.Message(
            good.body[:-10],  # cut short: the raw body runs past the end
            content_type=EVENTS_CONTENT_TYPE,
            headers={"x-routing-key": event.routing_key, "x-event-count": 1},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        exchange = await broker.channel.get_exchange(settings.prefix + ".events")
        await exchange.publish(broken, routing_key=event.routing_key)
        dead = broker.topology.consumer(ocr.name, settings.retry_delays).dead
        await eventually(lambda: broker.count_is(dead, 1))
    finally:
        await system.stop()
    [parked] = await broker.take_all(dead)
    assert parked.body == broken.body
    assert "does not unpack" in str((parked.headers or {})["x-last-error"])
    assert ocr.events == []


async def test_an_event_that_does_not_validate_is_parked_with_its_own_headers_and_body(
    settings: Settings, broker: BrokerClient
) -> None:
    """A message of one event: the parked copy keeps the event's idempotency key and request
    id (the message's headers are its one event's) and its bytes, with the reason."""
    ocr = Recorder("ocr-invalid", ["TaskFinish.#"])
    broker.track([ocr.name], settings.retry_delays)
    system = await RunningSystem.start(settings, [ocr.loaded()], ingress=False, router=False)
    try:
        [event] = parse_callback(OCR_XML.read_bytes())
        good = events_message(event.routing_key, [encode(event)], event)
        entry = encode(event)
        invalid = entry.doc.replace(b'"job_id":', b'"job_id":{"not":"a string"},"x":', 1)
        assert invalid != entry.doc
        bad = events_message(event.routing_key, [type(entry)(invalid, entry.raw)], event)
        assert bad.headers == good.headers
        exchange = await broker.channel.get_exchange(settings.prefix + ".events")
        await exchange.publish(bad, routing_key=event.routing_key)
        dead = broker.topology.consumer(ocr.name, settings.retry_delays).dead
        await eventually(lambda: broker.count_is(dead, 1))
    finally:
        await system.stop()
    [parked] = await broker.take_all(dead)
    headers = parked.headers or {}
    assert parked.body == bad.body
    assert headers["x-idempotency-key"] == event.idempotency_key
    assert headers["x-request-id"] == (bad.headers or {})["x-request-id"]
    assert "validation error" in str(headers["x-last-error"])
    assert ocr.events == []


async def test_a_worker_handles_an_event_message_published_by_another_client(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    """The event's JSON through aio-pika, not the router: the worker reads it the same."""
    ocr = Recorder("ocr", ["TaskFinish.ImageOCR.*"])
    system = await start_system([ocr], ingress=False, router=False)
    [event] = parse_callback(OCR_XML.read_bytes())
    old = aio_pika.Message(
        event.model_dump_json().encode(),
        content_type="application/json",
        message_id="elsewhere.0",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={"x-idempotency-key": event.idempotency_key, "x-routing-key": event.routing_key},
    )
    exchange = await broker.channel.get_exchange(system.settings.prefix + ".events")
    await exchange.publish(old, routing_key=event.routing_key)
    await eventually(lambda: len(ocr.events) == 1)
    assert ocr.events == [event]


async def test_every_handled_event_is_acked_when_handlers_finish_out_of_order(
    settings: Settings, broker: BrokerClient
) -> None:
    """Acks go in groups; none covers an event still being handled, none is left out."""
    rng = random.Random(15)
    handled: list[str] = []

    @consumer(name="jittery", routes=["TaskFinish.#"], concurrency=16)
    async def jittery(event: CallbackEvent) -> None:
        await asyncio.sleep(rng.random() * 0.05)
        handled.append(event.idempotency_key)

    broker.track(["jittery"], settings.retry_delays)
    loaded = LoadedConsumer.from_target(jittery, "test:jittery")
    system = await RunningSystem.start(settings, [loaded], ingress=False, router=False)
    try:
        [template] = parse_callback(OCR_XML.read_bytes())
        exchange = await broker.channel.get_exchange(settings.prefix + ".events")
        for i in range(60):
            event = template.model_copy(update={"idempotency_key": f"key-{i:02d}"})
            message = aio_pika.Message(
                event.model_dump_json().encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            )
            await exchange.publish(message, routing_key=event.routing_key)
        await eventually(lambda: len(handled) == 60)
    finally:
        await system.stop()  # anything not acked is now ready on the queue again
    assert handled != sorted(handled)  # they did finish out of order
    assert sorted(handled) == [f"key-{i:02d}" for i in range(60)]
    await asyncio.sleep(0.5)
    main = broker.topology.consumer("jittery", settings.retry_delays).main
    assert await broker.count(main) == 0
