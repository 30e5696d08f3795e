"""Group commit against a real RabbitMQ: fewer messages than bodies, every body exactly once."""

from __future__ import annotations

import asyncio
import math

import aio_pika
import aiohttp
import pytest

from ingress.groupcommit import AmqpPublisher
from shared.callbacks.parser import parse_callback
from shared.errors import BrokerUnavailable
from shared.settings import Settings
from shared.wire.raw import (
    BATCH_CONTENT_TYPE,
    BATCH_COUNT_HEADER,
    RawMeta,
    batch_message,
    unpack,
)
from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.system import Recorder
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

OCR_XML = (SEEDS / "ocr.1.xml").read_bytes()
TRANSLATION_JSON = (SEEDS / "translation.1.json").read_bytes()


def _distinct_body(i: int) -> bytes:
    """The OCR seed with a job id of its own, so each body is told apart at the consumer."""
    job_id = b"a3c193f288b2c11eeb60f39de2f86f409"
    assert job_id in OCR_XML
    return OCR_XML.replace(job_id, b"burst%028d" % i)


async def test_a_burst_of_concurrent_posts_travels_in_fewer_messages_yet_each_body_arrives_once(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    ingress = await start_system(router=False, worker=False)
    bodies = [_distinct_body(i) for i in range(200)]
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def post(body: bytes) -> tuple[int, str]:
            async with http.post(
                ingress.url, data=body, headers={"Content-Type": "application/xml"}
            ) as response:
                await response.read()
                return response.status, response.headers.get("X-Request-Id", "")

        answers = await asyncio.gather(*(post(b) for b in bodies))
    assert [status for status, _ in answers] == [200] * len(bodies)
    sent = {request_id: body for (_, request_id), body in zip(answers, bodies, strict=True)}
    assert len(sent) == len(bodies)

    raw_messages = await broker.count(broker.topology.raw)
    assert 0 < raw_messages < len(bodies)  # bodies shared messages: group commit happened

    everything = Recorder("everything", ["#"])
    await start_system([everything], ingress=False)
    await eventually(lambda: len(everything.events) >= len(bodies), timeout=30)
    await eventually(lambda: broker.count_is(broker.topology.raw, 0))
    assert len(everything.events) == len(bodies)  # nothing twice
    delivered = {}
    for event in everything.events:
        assert event.envelope is not None
        delivered[event.envelope.request_id] = event
    assert delivered.keys() == sent.keys()
    for request_id, event in delivered.items():
        assert event.envelope is not None
        assert event.envelope.raw_body == sent[request_id]
        assert event.envelope.source_address == "127.0.0.1"
        assert event.envelope.content_type == "application/xml"
        assert event.job_id == parse_callback(sent[request_id])[0].job_id
    assert await broker.count(broker.topology.unparsed) == 0


async def test_bodies_waiting_together_leave_as_one_batch_message_in_arrival_order(
    settings: Settings, broker: BrokerClient
) -> None:
    publisher = AmqpPublisher(settings)
    await publisher.start()
    try:
        metas = [
            RawMeta(f"req-{i}", 1_763_771_000.0 + i, "application/xml", "192.0.2.1")
            for i in range(50)
        ]
        bodies = [_distinct_body(i) for i in range(50)]
        await asyncio.gather(*(publisher.publish(b, m) for b, m in zip(bodies, metas, strict=True)))
    finally:
        await publisher.close()
    [message] = await broker.take_all(broker.topology.raw)
    assert message.content_type == BATCH_CONTENT_TYPE
    assert message.delivery_mode == 2
    assert (message.headers or {})[BATCH_COUNT_HEADER] == 50
    assert unpack(message.body) == list(zip(metas, bodies, strict=True))


async def test_a_batch_never_exceeds_its_count_and_byte_bounds(
    settings: Settings, broker: BrokerClient
) -> None:
    limit_bytes = 3 * len(OCR_XML)
    publisher = AmqpPublisher(settings, max_batch_count=8, max_batch_bytes=limit_bytes)
    await publisher.start()
    try:
        bodies = [_distinct_body(i) for i in range(40)] + [b"x" * (limit_bytes + 1)]
        metas = [RawMeta(f"req-{i}", 1.0, "application/xml", None) for i in range(len(bodies))]
        await asyncio.gather(*(publisher.publish(b, m) for b, m in zip(bodies, metas, strict=True)))
    finally:
        await publisher.close()
    messages = await broker.take_all(broker.topology.raw)
    carried: list[bytes] = []
    for message in messages:
        if message.content_type == BATCH_CONTENT_TYPE:
            entries = unpack(message.body)
            assert 2 <= len(entries) <= 8
            assert sum(len(body) for _, body in entries) <= limit_bytes
            carried += [body for _, body in entries]
        else:
            carried.append(message.body)
    assert carried == bodies  # each once, in order; the oversized body went alone
    assert len(messages) >= math.ceil(40 / 3) + 1


async def test_a_few_bodies_behind_a_message_in_flight_wait_for_its_confirm_and_go_together(
    settings: Settings, broker: BrokerClient
) -> None:
    publisher = AmqpPublisher(settings, max_in_flight=3, min_following=8)
    await publisher.start()
    try:
        metas = [RawMeta(f"req-{i}", 1.0, "application/xml", None) for i in range(4)]
        bodies = [_distinct_body(i) for i in range(4)]
        first = asyncio.create_task(publisher.publish(bodies[0], metas[0]))
        followers = []
        for body, meta in zip(bodies[1:], metas[1:], strict=True):
            await asyncio.sleep(0)  # each arrives in a turn of its own, slots free
            followers.append(asyncio.create_task(publisher.publish(body, meta)))
        await asyncio.gather(first, *followers)
    finally:
        await publisher.close()
    lone, batch = await broker.take_all(broker.topology.raw)
    assert (lone.message_id, lone.body) == ("req-0", bodies[0])
    assert batch.content_type == BATCH_CONTENT_TYPE
    assert unpack(batch.body) == list(zip(metas[1:], bodies[1:], strict=True))
    assert (publisher.messages_confirmed, publisher.bodies_confirmed) == (2, 4)


async def test_when_the_message_holding_a_batch_fails_every_request_in_it_fails(
    settings: Settings, broker: BrokerClient
) -> None:
    publisher = AmqpPublisher(settings, max_in_flight=1)
    await publisher.start()
    try:
        # The raw queue disappears under a running ingress: the broker returns what it sends.
        await broker.channel.queue_delete(broker.topology.raw)
        metas = [RawMeta(f"req-{i}", 1.0, "application/xml", None) for i in range(20)]
        outcomes = await asyncio.gather(
            *(publisher.publish(OCR_XML, m) for m in metas), return_exceptions=True
        )
    finally:
        await publisher.close()
    assert len(outcomes) == 20
    assert all(isinstance(outcome, BrokerUnavailable) for outcome in outcomes)
    assert publisher.bodies_confirmed == 0


async def test_an_unparsable_body_inside_a_batch_is_parked_alone_as_its_lone_message_would_be(
    start_system: StartSystem, broker: BrokerClient, settings: Settings
) -> None:
    everything = Recorder("everything", ["#"])
    await start_system([everything], ingress=False)
    bad = b"<Response><EventName>TaskFinish</EventName><JobsDetail>\xff\x00 not xml"
    good = [OCR_XML, TRANSLATION_JSON]
    in_batch = RawMeta(
        "in-batch",
        1_763_771_000.25,
        "application/xml",
        "198.51.100.4",
        {"Content-Type": "application/xml", "User-Agent": "CI"},
        "tencent-ci",
    )
    alone = RawMeta(
        "alone",
        1_763_771_000.25,
        "application/xml",
        "198.51.100.4",
        {"Content-Type": "application/xml", "User-Agent": "CI"},
        "tencent-ci",
    )
    entries = [
        (RawMeta("good-0", 1.0, "application/xml", "127.0.0.1"), good[0]),
        (in_batch, bad),
        (RawMeta("good-1", 2.0, "application/json", "127.0.0.1"), good[1]),
    ]
    exchange = broker.channel.default_exchange
    await exchange.publish(batch_message(entries), routing_key=broker.topology.raw)
    await exchange.publish(alone.message(bad), routing_key=broker.topology.raw)

    await eventually(lambda: broker.count_is(broker.topology.unparsed, 2))
    expected = sum(len(parse_callback(body)) for body in good)
    await eventually(lambda: len(everything.events) >= expected)
    parked = {m.message_id: m for m in await broker.take_all(broker.topology.unparsed)}
    assert parked.keys() == {"in-batch", "alone"}
    from_batch, from_lone = parked["in-batch"], parked["alone"]
    assert from_batch.body == bad  # byte for byte, on its own
    assert from_batch.content_type == "application/xml" != BATCH_CONTENT_TYPE
    assert from_batch.delivery_mode == 2
    headers = from_batch.headers or {}
    assert headers["x-received-at-us"] == 1_763_771_000_250_000  # exact: an integer header
    assert headers["x-source-address"] == "198.51.100.4"
    assert headers["x-token-name"] == "tencent-ci"
    assert headers["x-http-headers"] == {"Content-Type": "application/xml", "User-Agent": "CI"}
    assert "x-parse-error" in headers
    assert BATCH_COUNT_HEADER not in headers
    # exactly what the same body parks as when it travelled alone
    assert from_batch.body == from_lone.body
    assert from_batch.headers == from_lone.headers
    for prop in ("content_type", "content_encoding", "delivery_mode", "type", "app_id"):
        assert getattr(from_batch, prop) == getattr(from_lone, prop)
    # the good bodies of the batch were routed, each with its own envelope
    request_ids = {e.envelope.request_id for e in everything.events if e.envelope is not None}
    assert request_ids == {"good-0", "good-1"}
    assert len(everything.events) == expected
    await eventually(lambda: broker.count_is(broker.topology.raw, 0))


async def test_a_batch_that_does_not_unpack_is_parked_whole_with_the_reason(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    await start_system(ingress=False, worker=False)
    broken = aio_pika.Message(
        b"\x00\x00\x00\x05{}",
        content_type=BATCH_CONTENT_TYPE,
        message_id="batch-broken",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    await broker.channel.default_exchange.publish(broken, routing_key=broker.topology.raw)
    await eventually(lambda: broker.count_is(broker.topology.unparsed, 1))
    [parked] = await broker.take_all(broker.topology.unparsed)
    assert parked.body == broken.body
    assert parked.message_id == "batch-broken"
    assert "runs past the end" in str((parked.headers or {})["x-parse-error"])


async def test_a_lone_body_at_low_load_is_an_ordinary_message_byte_for_byte(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    system = await start_system(router=False, worker=False)
    request_ids = []
    for body in (OCR_XML, TRANSLATION_JSON, OCR_XML):  # one after the other: nobody waits
        response = await system.post(body, "application/xml", **{"User-Agent": "ci-test"})
        assert response.status == 200
        request_ids.append(response.headers["X-Request-Id"])
    messages = await broker.take_all(broker.topology.raw)
    assert [m.message_id for m in messages] == request_ids
    assert [m.body for m in messages] == [OCR_XML, TRANSLATION_JSON, OCR_XML]
    for message in messages:
        assert message.content_type == "application/xml"
        assert message.delivery_mode == 2
        headers = message.headers or {}
        assert BATCH_COUNT_HEADER not in headers
        assert headers["x-source-address"] == "127.0.0.1"
        assert headers["x-http-headers"] == {
            "Content-Type": "application/xml",
            "User-Agent": "ci-test",
        }


def test_the_defaults_are_those_the_docs_give() -> None:
    """docs/performance.md: up to 256 bodies or 1 MiB a message, at most three messages in
    flight, and behind one in flight a message leaves only with 12 bodies."""
    from ingress import groupcommit

    assert groupcommit.MAX_BATCH_COUNT == 256
    assert groupcommit.MAX_BATCH_BYTES == 1024 * 1024
    assert groupcommit.MAX_IN_FLIGHT == 3
    assert groupcommit.MIN_FOLLOWING == 12


async def test_with_the_defaults_bodies_of_one_turn_leave_256_or_1_mib_to_a_message(
    settings: Settings, broker: BrokerClient
) -> None:
    publisher = AmqpPublisher(settings)  # as the ingress makes it: no bound given
    await publisher.start()
    try:
        small = [_distinct_body(i) for i in range(300)]
        big = [bytes([65 + i]) * (300 * 1024) for i in range(5)]  # 3 fit in 1 MiB, 4 do not
        for bodies in (small, big):
            metas = [RawMeta(f"req-{i}", 1.0, "application/xml", None) for i in range(len(bodies))]
            await asyncio.gather(
                *(publisher.publish(b, m) for b, m in zip(bodies, metas, strict=True))
            )
    finally:
        await publisher.close()
    messages = await broker.take_all(broker.topology.raw)
    assert [len(unpack(m.body)) for m in messages] == [256, 44, 3, 2]
    assert [body for m in messages for _, body in unpack(m.body)] == small + big
