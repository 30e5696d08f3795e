"""``forward``: events POSTed as Standard Webhooks, answers mapped to the runtime's outcomes.

The receiver checks every signature with the ``standardwebhooks`` package."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import json
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from shared.callbacks import CallbackEvent
from shared.errors import Retry
from shared.settings import Settings
from tests.builtin.conftest import StartWith, observed
from tests.conftest import SEEDS
from tests.support.broker import BrokerClient
from tests.support.processes import free_port
from tests.support.receiver import Answer, Receiver
from tests.support.waiting import eventually
from workers.builtin import forward
from workers.consumer import ConsumerSpec
from workers.testing import parse_body

pytestmark = pytest.mark.broker

OCR_XML = (SEEDS / "ocr.1.xml").read_bytes()
OCR_JSON = (SEEDS / "ocr.1.json").read_bytes()
JOB = "a3c193f288b2c11eeb60f39de2f86f409"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver([SECRET, OLD_SECRET])
    await server.start()
    yield server
    await server.stop()


def forwarding(
    url: str, *, retry_delays: tuple[float, ...] = (0.2, 0.4), max_attempts: int = 3, **options: Any
) -> Any:
    spec = ConsumerSpec(
        name="billing",
        routes=("TaskFinish.#",),
        retry_delays=retry_delays,
        max_attempts=max_attempts,
        concurrency=4,
    )
    return observed(forward.build(spec, forward.Options.model_validate({"url": url, **options})))


async def _parked(broker: BrokerClient, settings: Settings, delays: tuple[float, ...]) -> Any:
    dead = broker.topology.consumer("billing", delays).dead
    await eventually(lambda: broker.count_is(dead, 1), timeout=20)
    [message] = await broker.take_all(dead)
    return message


async def test_the_event_arrives_as_json_signed_with_every_secret_and_identified_by_its_key(
    start_with: StartWith, receiver: Receiver
) -> None:
    loaded, outcomes = forwarding(
        receiver.url, secret=[SECRET, OLD_SECRET], headers={"Authorization": "Bearer abc"}
    )
    system = await start_with([loaded])
    assert (await system.post(OCR_XML)).status == 200
    await eventually(lambda: len(outcomes.handled) == 1)
    [request] = receiver.received
    [event] = outcomes.handled
    assert request.verified_by == (0, 1)
    assert request.content_type == "application/json"
    assert request.body == event.model_dump_json().encode()
    assert json.loads(request.body) == event.model_dump(mode="json")
    assert CallbackEvent.model_validate_json(request.body).job_id == JOB
    assert request.headers["webhook-id"] == event.idempotency_key
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert request.headers["X-Routing-Key"] == "TaskFinish.ImageOCR.Success"
    assert event.envelope is not None
    assert request.headers["X-Request-Id"] == event.envelope.request_id
    assert request.headers["Authorization"] == "Bearer abc"


async def test_raw_mode_delivers_the_callback_body_byte_for_byte_with_its_content_type(
    start_with: StartWith, receiver: Receiver
) -> None:
    loaded, outcomes = forwarding(receiver.url, secret=SECRET, body="raw")
    system = await start_with([loaded])
    assert (
        await system.post(OCR_JSON, content_type="application/json; charset=utf-8")
    ).status == 200
    assert (await system.post(OCR_XML, content_type="text/xml")).status == 200
    await eventually(lambda: len(outcomes.handled) == 2)
    bodies = {r.body: r for r in receiver.received}
    assert set(bodies) == {OCR_JSON, OCR_XML}
    assert bodies[OCR_JSON].content_type == "application/json; charset=utf-8"
    assert bodies[OCR_XML].content_type == "text/xml"
    assert all(r.verified_by == (0,) for r in receiver.received)


async def test_a_500_is_retried_and_the_event_delivered_on_the_second_attempt_with_the_same_id(
    start_with: StartWith, receiver: Receiver
) -> None:
    receiver.answers = [Answer(500, b"database down")]
    loaded, outcomes = forwarding(receiver.url, secret=SECRET)
    system = await start_with([loaded])
    assert (await system.post(OCR_XML)).status == 200
    await eventually(lambda: len(outcomes.handled) == 1)
    first, second = receiver.received
    assert [str(e) for e in outcomes.errors] == ["HTTP 500: database down"]
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert second.verified_by == (0,)
    assert second.at - first.at >= 0.2


async def test_a_429_with_retry_after_picks_the_matching_delay_step(
    start_with: StartWith, receiver: Receiver
) -> None:
    receiver.answers = [Answer(429, b"slow down", {"Retry-After": "2"})]
    loaded, outcomes = forwarding(receiver.url, secret=SECRET, retry_delays=(0.2, 2.0, 8.0))
    system = await start_with([loaded])
    assert (await system.post(OCR_XML)).status == 200
    await eventually(lambda: len(outcomes.handled) == 1, timeout=20)
    first, second = receiver.received
    assert 1.9 <= second.at - first.at < 7.0  # the 2 s step: neither the first nor the last


async def test_a_400_is_parked_at_once_with_the_status_and_the_first_500_bytes_of_the_answer(
    start_with: StartWith, receiver: Receiver, broker: BrokerClient, settings: Settings
) -> None:
    answer = b"x" * 499 + b"!" + b"y" * 300
    receiver.answers = [Answer(400, answer)]
    loaded, outcomes = forwarding(receiver.url, secret=SECRET, max_attempts=5)
    system = await start_with([loaded])
    assert (await system.post(OCR_XML)).status == 200
    parked = await _parked(broker, settings, (0.2, 0.4))
    headers = parked.headers or {}
    assert headers["x-last-error"] == "GiveUp: HTTP 400: " + "x" * 499 + "!"
    assert headers["x-attempts"] == 1
    assert len(receiver.received) == 1
    assert outcomes.handled == []


async def test_a_redirect_is_not_followed_and_parks_the_event(
    start_with: StartWith, receiver: Receiver, broker: BrokerClient, settings: Settings
) -> None:
    receiver.answers = [Answer(307, b"", {"Location": receiver.url})]
    loaded, _ = forwarding(receiver.url, secret=SECRET)
    system = await start_with([loaded])
    assert (await system.post(OCR_XML)).status == 200
    parked = await _parked(broker, settings, (0.2, 0.4))
    assert (parked.headers or {})["x-last-error"] == "GiveUp: HTTP 307 redirect not followed: "
    assert len(receiver.received) == 1


async def test_an_endpoint_that_does_not_answer_in_time_is_retried(
    start_with: StartWith, receiver: Receiver
) -> None:
    receiver.answers = [Answer(200, delay=3.0)]
    loaded, outcomes = forwarding(receiver.url, secret=SECRET, request_timeout=0.3)
    system = await start_with([loaded])
    assert (await system.post(OCR_XML)).status == 200
    await eventually(lambda: len(outcomes.handled) == 1)
    assert [str(e) for e in outcomes.errors] == ["no answer within 0.3s"]
    assert len(receiver.received) == 2


async def test_a_refused_connection_is_retried_until_the_attempts_are_used_up(
    start_with: StartWith, broker: BrokerClient, settings: Settings
) -> None:
    loaded, outcomes = forwarding(f"http://127.0.0.1:{free_port()}/hook", max_attempts=2)
    system = await start_with([loaded])
    assert (await system.post(OCR_XML)).status == 200
    parked = await _parked(broker, settings, (0.2, 0.4))
    headers = parked.headers or {}
    assert headers["x-attempts"] == 2
    assert str(headers["x-last-error"]).startswith(
        "shared.errors.Retry: connection error: ClientConnectorError: Cannot connect"
    )
    assert len(outcomes.errors) == 2


async def test_a_refused_connection_then_a_live_endpoint_delivers(
    start_with: StartWith,
) -> None:
    port = free_port()
    late = Receiver([SECRET])
    loaded, outcomes = forwarding(
        f"http://127.0.0.1:{port}/hook", secret=SECRET, retry_delays=(0.5,), max_attempts=4
    )
    system = await start_with([loaded])
    try:
        assert (await system.post(OCR_XML)).status == 200
        await eventually(lambda: len(outcomes.errors) >= 1)
        await late.start(port)
        await eventually(lambda: len(outcomes.handled) == 1)
    finally:
        await late.stop()
    assert [r.verified_by for r in late.received] == [(0,)]


def test_options_refuse_a_secret_without_whsec_and_headers_forward_sets_itself() -> None:
    with pytest.raises(ValueError, match="must start with 'whsec_'"):
        forward.Options.model_validate({"url": "http://x/", "secret": "plain"})
    with pytest.raises(ValueError, match="webhook-id are set by forward itself"):
        forward.Options.model_validate({"url": "http://x/", "headers": {"webhook-id": "1"}})
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        forward.Options.model_validate({"url": "http://x/", "sekret": SECRET})
    options = forward.Options.model_validate({"url": "http://x/", "secret": SECRET})
    assert SECRET not in repr(options)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and a server context using it."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


async def test_tls_is_verified_an_unknown_certificate_is_retried_and_a_ca_file_trusts_it(
    start_with: StartWith,
    broker: BrokerClient,
    settings: Settings,
    certificate: tuple[Path, ssl.SSLContext],
) -> None:
    ca_file, tls = certificate
    server = Receiver([SECRET])
    await server.start(tls=tls)
    try:
        untrusting, failed = forwarding(server.url, secret=SECRET, max_attempts=2)
        system = await start_with([untrusting])
        assert (await system.post(OCR_XML)).status == 200
        parked = await _parked(broker, settings, (0.2, 0.4))
        reason = str((parked.headers or {})["x-last-error"])
        assert "connection error: ClientConnectorCertificateError" in reason
        assert "certificate verify failed" in reason
        assert server.received == []
        await system.stop()

        trusting = forward.build(
            ConsumerSpec(name="billing-tls", routes=("TaskFinish.#",)),
            forward.Options.model_validate(
                {"url": server.url, "secret": SECRET, "ca_file": str(ca_file)}
            ),
        )
        trusting, delivered = observed(trusting)
        system = await start_with([trusting])
        assert (await system.post(OCR_XML)).status == 200
        await eventually(lambda: len(delivered.handled) == 1)
        assert [r.verified_by for r in server.received] == [(0,)]
        assert len(failed.errors) == 2
    finally:
        await server.stop()


# -- the consumer alone, against a local endpoint (no broker) --------------------------


async def _forward_once(url: str, **options: Any) -> None:
    """One event through a started ``forward`` consumer, as the runtime calls it."""
    consumer = forward.ForwardConsumer(
        ConsumerSpec(name="billing", routes=("TaskFinish.#",)),
        forward.Options.model_validate({"url": url, "secret": SECRET, **options}),
    )
    [event] = parse_body(OCR_XML)
    await consumer.startup()
    try:
        await consumer.handle(event)
    finally:
        await consumer.shutdown()


@pytest.mark.parametrize("status", [408, 425])
async def test_408_and_425_are_retried_through_the_delays(status: int) -> None:
    server = Receiver([SECRET], [Answer(status, b"not yet")])
    await server.start()
    try:
        with pytest.raises(Retry, match=f"HTTP {status}: not yet") as retried:
            await _forward_once(server.url)
    finally:
        await server.stop()
    assert retried.value.delay is None  # the consumer's next delay step


async def test_a_retry_after_given_as_an_http_date_asks_for_the_seconds_until_then() -> None:
    then = datetime.now(UTC) + timedelta(seconds=30)
    answer = Answer(503, headers={"Retry-After": email.utils.format_datetime(then, usegmt=True)})
    server = Receiver([SECRET], [answer])
    await server.start()
    try:
        with pytest.raises(Retry) as retried:
            await _forward_once(server.url)
    finally:
        await server.stop()
    assert retried.value.delay is not None
    assert 27.0 <= retried.value.delay <= 30.0  # whole seconds in the date, then our clock


async def test_an_endless_answer_is_read_up_to_max_response_bytes_only() -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            while True:  # an answer that never ends: only the bound ends the read
                await response.write(b"x" * 4096)
                await asyncio.sleep(0.001)
        return response

    app = web.Application()
    app.router.add_post("/", endless)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        started = time.monotonic()
        await _forward_once(url, max_response_bytes=65536, request_timeout=5.0)  # handled
        assert time.monotonic() - started < 2.0
    finally:
        await runner.cleanup()


async def test_tls_verify_false_accepts_a_certificate_nobody_trusts(
    certificate: tuple[Path, ssl.SSLContext],
) -> None:
    _, tls = certificate
    server = Receiver([SECRET])
    await server.start(tls=tls)
    try:
        with pytest.raises(Retry, match="certificate verify failed"):
            await _forward_once(server.url)
        await _forward_once(server.url, tls_verify=False)
    finally:
        await server.stop()
    assert [r.verified_by for r in server.received] == [(0,)]
