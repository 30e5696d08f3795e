"""The pipeline end to end against a real RabbitMQ: HTTP in, typed events out per consumer."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.callbacks.parser import parse_callback
from shared.settings import Settings
from shared.wire.events import entries_of
from tests.conftest import SEED_FILES, SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.proxy import CuttableProxy
from tests.support.system import Recorder
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

OCR_XML = SEEDS / "ocr.1.xml"
TRANSLATION_XML = SEEDS / "translation.1.xml"


def _content_type(path: Path) -> str:
    return "application/json" if path.suffix == ".json" else "application/xml"


async def test_every_seed_posted_over_http_reaches_a_consumer_as_its_typed_events(
    start_system: StartSystem,
) -> None:
    seeds = SEED_FILES
    assert len(seeds) == 12
    everything = Recorder("everything", ["#"])
    system = await start_system([everything])
    started = datetime.now(UTC)
    expected: dict[str, list[str]] = {}
    for path in seeds:
        body = path.read_bytes()
        response = await system.post(body, _content_type(path))
        assert response.status == 200, path.name
        request_id = response.headers["X-Request-Id"]
        expected[request_id] = [e.routing_key for e in parse_callback(body)]

    total = sum(len(keys) for keys in expected.values())
    await eventually(lambda: len(everything.events) >= total)
    assert len(everything.events) == total
    for event in everything.events:
        assert event.envelope is not None
        assert started <= event.envelope.received_at <= datetime.now(UTC)
        assert event.envelope.source_address == "127.0.0.1"
        request_id = event.envelope.request_id
        assert event.routing_key in expected[request_id]
        original = next(p for p in seeds if p.read_bytes() == event.envelope.raw_body)
        offline = parse_callback(original.read_bytes())
        assert event.job_id in {e.job_id for e in offline}
    ocr = [e for e in everything.events if e.routing_key == "TaskFinish.ImageOCR.Success"]
    assert {e.job_id for e in ocr} == {"a3c193f288b2c11eeb60f39de2f86f409"}


async def test_raw_queue_holds_the_body_byte_for_byte_with_the_request_id(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    system = await start_system(router=False, worker=False)
    body = OCR_XML.read_bytes()
    before = time.time()
    response = await system.post(
        body, "application/xml", **{"X-Ci-Content-Version": "Detail", "User-Agent": "ci-test"}
    )
    assert response.status == 200
    [message] = await broker.take_all(broker.topology.raw)
    assert message.body == body
    assert message.message_id == response.headers["X-Request-Id"]
    assert message.content_type == "application/xml"
    assert message.delivery_mode == 2  # persistent
    headers = message.headers or {}
    assert headers["x-source-address"] == "127.0.0.1"
    received_us = headers["x-received-at-us"]
    assert isinstance(received_us, int)  # an integer: a float header would travel as float32
    assert before <= received_us / 1e6 <= time.time()
    assert headers["x-http-headers"] == {
        "Content-Type": "application/xml",
        "User-Agent": "ci-test",
        "X-Ci-Content-Version": "Detail",
    }


async def test_overlapping_routes_fan_out_and_unwanted_events_land_in_unrouted(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    ocr = Recorder("ocr", ["TaskFinish.ImageOCR.*"])
    all_tasks = Recorder("all-tasks", ["TaskFinish.#"])
    reviews = Recorder("reviews", ["ReviewImage.#"])
    failures = Recorder("failures", ["*.*.Failed"])
    system = await start_system([ocr, all_tasks, reviews, failures])

    assert (await system.post(OCR_XML.read_bytes())).status == 200
    await eventually(lambda: len(ocr.events) == 1 and len(all_tasks.events) == 1)
    assert ocr.events[0].idempotency_key == all_tasks.events[0].idempotency_key

    # Nobody but all-tasks wants a translation; stop all-tasks' interest by posting a kind
    # nobody binds: a moderation event.
    moderation = (
        b'{"EventName":"ReviewImage","JobsDetail":{"JobId":"si1","State":"Success",'
        b'"Object":"a.jpg","Label":"Normal","Result":0}}'
    )
    reviews_only_count = len(reviews.events)
    assert (await system.post(moderation, "application/json")).status == 200
    await eventually(lambda: len(reviews.events) == reviews_only_count + 1)

    system_unwanted = b"<Response><EventName>WorkflowFinish</EventName>" + (
        b"<WorkflowExecution><RunId>r1</RunId><State>Success</State></WorkflowExecution></Response>"
    )
    assert (await system.post(system_unwanted)).status == 200
    await eventually(lambda: broker.count_is(broker.topology.unrouted, 1))
    [unrouted] = await broker.take_all(broker.topology.unrouted)
    assert str((unrouted.headers or {})["x-routing-key"]).startswith("WorkflowFinish.")
    assert failures.events == []
    assert len(ocr.events) == 1  # nothing else matched its route


async def test_a_consumer_that_fails_twice_then_succeeds_is_called_three_times_with_backoff(
    start_system: StartSystem,
) -> None:
    flaky = Recorder("flaky", ["TaskFinish.#"], fail_times=2, retry_delays=[0.3, 0.6])
    system = await start_system([flaky])
    assert (await system.post(OCR_XML.read_bytes())).status == 200
    await eventually(lambda: len(flaky.events) == 1)
    assert len(flaky.calls) == 3
    first_gap, second_gap = (b - a for a, b in zip(flaky.calls, flaky.calls[1:], strict=False))
    assert first_gap >= 0.29
    assert second_gap >= 0.59


async def test_a_consumer_that_always_fails_ends_in_its_dead_queue_with_body_and_error(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    doomed = Recorder("doomed", ["TaskFinish.#"], always_fail=True, max_attempts=3)
    system = await start_system([doomed])
    assert (await system.post(OCR_XML.read_bytes())).status == 200
    dead = broker.topology.consumer("doomed", system.settings.retry_delays).dead
    await eventually(lambda: broker.count_is(dead, 1))
    assert len(doomed.calls) == 3
    [parked] = await broker.take_all(dead)
    [entry] = entries_of(parked.content_type, parked.body)
    dead_event = entry.event()
    assert dead_event.job_id == "a3c193f288b2c11eeb60f39de2f86f409"
    assert dead_event.envelope is not None
    assert dead_event.envelope.raw_body == OCR_XML.read_bytes()
    headers = parked.headers or {}
    assert headers["x-attempts"] == 3
    assert headers["x-consumer"] == "doomed"
    assert "doomed fails on purpose (call 3)" in str(headers["x-last-error"])
    assert headers["x-routing-key"] == "TaskFinish.ImageOCR.Success"


async def test_a_failing_consumer_never_slows_another_consumers_queue(
    start_system: StartSystem,
) -> None:
    slow_failing = Recorder("slow-failing", ["TaskFinish.#"], always_fail=True, delay=3.0)
    healthy = Recorder("healthy", ["TaskFinish.#"])
    system = await start_system([slow_failing, healthy])
    for _ in range(20):
        assert (await system.post(TRANSLATION_XML.read_bytes())).status == 200
    await eventually(lambda: len(healthy.events) == 20, timeout=slow_failing.delay)
    # Every healthy event was handled before the failing consumer's first handler returned:
    # nothing waited for it, and it has not finished (nor failed) a single one yet.
    assert healthy.calls[-1] < slow_failing.calls[0] + slow_failing.delay
    assert slow_failing.events == []
    assert 1 <= len(slow_failing.calls) <= system.settings.concurrency


@pytest.mark.parametrize(
    ("body", "reason", "location"),
    [
        (
            b"\x00\x01garbage that is neither XML nor JSON",
            "the body contains a NUL character",
            "line 1, column 1",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
            b"<Response>&lol2;</Response>",
            "XML document type declarations (DTD) are refused: a callback needs no DTD and "
            "entities could expand or reach out",
            "line 1, column 37",
        ),
    ],
    ids=["garbage", "xml-bomb"],
)
async def test_a_body_that_does_not_parse_is_accepted_and_parked_byte_for_byte_with_reason(
    start_system: StartSystem, broker: BrokerClient, body: bytes, reason: str, location: str
) -> None:
    system = await start_system()
    response = await system.post(body, "application/xml")
    assert response.status == 200
    await eventually(lambda: broker.count_is(broker.topology.unparsed, 1))
    [parked] = await broker.take_all(broker.topology.unparsed)
    assert parked.body == body
    assert parked.message_id == response.headers["X-Request-Id"]
    headers = parked.headers or {}
    assert headers["x-parse-error"] == reason
    assert headers["x-parse-location"] == location


async def test_an_empty_body_is_refused_with_400_and_nothing_is_published(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    system = await start_system(router=False, worker=False)
    response = await system.post(b"")
    assert response.status == 400
    assert await broker.count(broker.topology.raw) == 0


async def test_a_20_mib_body_is_refused_with_413_and_nothing_is_published(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    system = await start_system(router=False, worker=False)
    response = await system.post(io.BytesIO(b"<x>" + b"a" * (20 * 1024 * 1024) + b"</x>"))
    assert response.status == 413
    assert await broker.count(broker.topology.raw) == 0


async def test_a_chunked_body_past_the_limit_is_refused_with_413_while_reading(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    system = await start_system(router=False, worker=False)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20 * 16):  # 20 MiB in 64 KiB chunks, no Content-Length
            yield b"a" * 65536

    response = await system.post(chunks())
    assert response.status == 413
    assert await broker.count(broker.topology.raw) == 0


async def test_ingress_answers_503_while_the_broker_is_away_and_200_again_on_its_own(
    start_system: StartSystem, broker_proxy_settings: tuple[Settings, CuttableProxy]
) -> None:
    settings, proxy = broker_proxy_settings
    system = await start_system(settings_=settings, router=False, worker=False)
    body = OCR_XML.read_bytes()
    assert (await system.post(body)).status == 200

    proxy.cut()
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await system.post(body)
    elapsed = loop.time() - started
    assert response.status == 503
    assert response.headers["Retry-After"] == str(settings.retry_after)
    assert elapsed < settings.confirm_timeout + 1.0

    proxy.restore()

    async def accepted_again() -> bool:
        return (await system.post(body)).status == 200

    await eventually(accepted_again, timeout=20, interval=0.2)
