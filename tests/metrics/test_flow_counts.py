"""A known flow through ingress, router and workers: each role's /metrics, scraped over HTTP
from its own admin port, counts exactly what happened."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from shared.settings import Settings
from tests.conftest import FIXTURES, SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.metrics import Scrape, scrape
from tests.support.proxy import CuttableProxy
from tests.support.system import Recorder, RunningSystem
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

OCR = (SEEDS / "ocr.1.xml").read_bytes()
TRANSLATION = (SEEDS / "translation.1.xml").read_bytes()
PIC_PROCESS = (SEEDS / "pic-process.1.xml").read_bytes()
IMAGE_INSPECT = (SEEDS / "image-inspect.1.xml").read_bytes()
WORKFLOW = (FIXTURES / "callbacks" / "workflow-finish.json").read_bytes()
#: A task type nobody has heard of, chosen by whoever posts: must not become a label value.
HOSTILE_TAG = (
    b'{"EventName":"TaskFinish","JobsDetail":{"Code":"Success","JobId":"j-hostile-1",'
    b'"State":"Success","Tag":"Made-Up-' + secrets.token_hex(4).encode() + b'"}}'
)
UNPARSABLE = b"<Response><JobsDetail><Tag>ImageOCR"
MAX_BODY = 65536
LIMITED_CLIENT = "10.9.9.9"


class Sender:
    """Posts callbacks through a trusted proxy (127.0.0.1), as client ``10.1.0.<n>``."""

    def __init__(self, http: aiohttp.ClientSession, system: RunningSystem, secret: str) -> None:
        assert system.ingress is not None
        self.http = http
        self.base = f"http://127.0.0.1:{system.ingress.port}"
        self.secret = secret
        self._clients = (f"10.1.{n // 250}.{n % 250 + 1}" for n in itertools.count())

    async def post(
        self,
        body: Any,
        *,
        token: str | None = "",
        client: str | None = None,
        content_type: str = "application/xml",
        headers: Mapping[str, str] | None = None,
    ) -> int:
        path = "/callbacks" if token is None else f"/callbacks/{token or self.secret}"
        sent = {
            "Content-Type": content_type,
            "X-Forwarded-For": client or next(self._clients),
            **(headers or {}),
        }
        async with self.http.post(self.base + path, data=body, headers=sent) as response:
            await response.read()
            return response.status

    async def trickle(self) -> bytes:
        """Send the head and 10 of 1,000 body bytes, then nothing: the answer's first line."""
        host, port = self.base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        head = (
            f"POST /callbacks/{self.secret} HTTP/1.1\r\nHost: {host}\r\n"
            f"X-Forwarded-For: {next(self._clients)}\r\nContent-Length: 1000\r\n\r\n"
        )
        writer.write(head.encode() + b"x" * 10)
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.readline(), 10)
        finally:
            writer.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _front_settings(proxied: Settings, secret: str) -> Settings:
    """The ingress's settings: a token, an allowlist behind a trusted proxy, a rate limit."""
    return proxied.model_copy(
        update={
            "tokens": [SecretStr(f"ci={secret}")],
            "trusted_proxies": ["127.0.0.1/32"],
            "allowed_networks": ["10.0.0.0/8"],
            "rate_limit": 0.01,
            "rate_burst": 2,
            "max_body_bytes": MAX_BODY,
            "body_timeout": 0.5,
        }
    )


async def test_each_role_counts_exactly_the_flow_it_saw(
    start_system: StartSystem,
    broker: BrokerClient,
    broker_proxy_settings: tuple[Settings, CuttableProxy],
    http: aiohttp.ClientSession,
) -> None:
    flaky = Recorder("flaky", ["TaskFinish.ImageOCR.*"], fail_times=2)
    broken = Recorder("broken", ["TaskFinish.Translation.*"], always_fail=True)
    deduped = Recorder("deduped", ["TaskFinish.PicProcess.*"], dedupe=True)
    slow = Recorder("slow", ["TaskFinish.ImageInspect.*"], delay=3.0, timeout=0.2)
    back = await start_system([flaky, broken, deduped, slow], ingress=False, admin=True)
    proxied, proxy = broker_proxy_settings
    secret = secrets.token_urlsafe(16)
    front = await start_system(
        settings_=_front_settings(proxied, secret), router=False, worker=False, admin=True
    )
    sender = Sender(http, front, secret)

    accepted = [OCR, TRANSLATION, IMAGE_INSPECT, PIC_PROCESS, UNPARSABLE, HOSTILE_TAG, WORKFLOW]
    for body in accepted:
        assert await sender.post(body) == 200
    await eventually(lambda: len(deduped.events) == 1)
    assert await sender.post(PIC_PROCESS) == 200  # the same callback again: a duplicate
    accepted.append(PIC_PROCESS)
    await _refused_once_for_each_reason(sender)
    await _refused_while_the_broker_is_away(front, proxy, sender, http)

    async def settled() -> bool:
        consumers = await scrape(http, back.admin_url("worker"))
        events = "callback_fanout_consumer_events_total"
        return (
            consumers.value(events, consumer="flaky", outcome="handled") == 1
            and consumers.value(events, consumer="broken", outcome="parked") == 1
            and consumers.value(events, consumer="slow", outcome="parked") == 1
            and consumers.value(events, consumer="deduped", outcome="duplicate") == 1
        )

    await eventually(settled, timeout=30, interval=0.2)
    await asyncio.sleep(0.5)  # nothing more may come

    _ingress_counted(await scrape(http, front.admin_url("ingress")), accepted)
    _router_counted(await scrape(http, back.admin_url("router")))
    _worker_counted(await scrape(http, back.admin_url("worker")))


async def _refused_once_for_each_reason(sender: Sender) -> None:
    """Every refusal the ingress can be made to give (unavailable aside)."""
    assert await sender.post(OCR, token=None) == 404  # unauthorized: no token
    assert await sender.post(OCR, token="wrong", client=LIMITED_CLIENT) == 404  # unauthorized
    assert await sender.post(OCR, token="wrong", client=LIMITED_CLIENT) == 404  # unauthorized
    assert await sender.post(OCR, client=LIMITED_CLIENT) == 429  # rate_limited: burst used
    assert await sender.post(OCR, client="192.0.2.7") == 403  # forbidden: not allowed
    assert await sender.post(b"x" * (MAX_BODY + 1)) == 413  # too_large, by its length
    bomb = gzip.compress(b"\0" * (MAX_BODY * 4))
    assert await sender.post(bomb, headers={"Content-Encoding": "gzip"}) == 413  # too_large
    assert await sender.post(b"") == 400  # bad_request: empty
    assert await sender.post(b"not gzip", headers={"Content-Encoding": "gzip"}) == 400
    assert await sender.post(OCR, headers={"Content-Encoding": "br"}) == 415
    assert (await sender.trickle()).startswith(b"HTTP/1.1 408")  # timeout


async def _refused_while_the_broker_is_away(
    front: RunningSystem, proxy: CuttableProxy, sender: Sender, http: aiohttp.ClientSession
) -> None:
    """The ingress loses the broker (router and worker do not): 503, then back."""
    assert front.ingress is not None
    publisher = front.ingress.publisher
    proxy.cut()
    await eventually(lambda: not publisher.ready)
    away = await scrape(http, front.admin_url("ingress"))
    assert away.value("callback_fanout_broker_connected", role="ingress") == 0
    assert await sender.post(OCR) == 503  # unavailable
    proxy.restore()
    await eventually(lambda: publisher.ready, timeout=30)


def _ingress_counted(ingress: Scrape, accepted: list[bytes]) -> None:
    assert ingress.series("callback_fanout_ingress_requests_total") == _by(
        "outcome",
        accepted=8,
        spooled=0,
        unavailable=1,
        unauthorized=3,
        forbidden=1,
        rate_limited=1,
        too_large=2,
        bad_request=2,
        timeout=1,
        unsupported_encoding=1,
    )
    assert ingress.value("callback_fanout_ingress_request_seconds_count") == 20
    assert ingress.value("callback_fanout_ingress_request_seconds_bucket", le="5.0") == 20
    assert ingress.value("callback_fanout_ingress_body_bytes_count") == 8
    assert ingress.value("callback_fanout_ingress_body_bytes_sum") == sum(map(len, accepted))
    # Posted one at a time, each body travelled alone: 8 messages of one body each.
    assert ingress.value("callback_fanout_ingress_batch_bodies_count") == 8
    assert ingress.value("callback_fanout_ingress_batch_bodies_sum") == 8
    assert ingress.value("callback_fanout_ingress_batch_bodies_bucket", le="1.0") == 8
    for gauge in ("records", "bytes", "oldest_seconds"):
        assert ingress.value(f"callback_fanout_spool_{gauge}") == 0
    assert ingress.value("callback_fanout_broker_connected", role="ingress") == 1
    assert ingress.value("process_resident_memory_bytes") > 0


def _router_counted(router: Scrape) -> None:
    assert router.series("callback_fanout_router_bodies_total") == _by(
        "outcome", routed=7, parked=1
    )
    assert router.series("callback_fanout_router_events_total") == {
        _labels(event_name="TaskFinish", tag="ImageOCR", state="Success"): 1,
        _labels(event_name="TaskFinish", tag="Translation", state="Success"): 1,
        _labels(event_name="TaskFinish", tag="ImageInspect", state="Success"): 1,
        _labels(event_name="TaskFinish", tag="PicProcess", state="Success"): 2,
        _labels(event_name="TaskFinish", tag="other", state="Success"): 1,  # the made-up tag
        _labels(event_name="WorkflowFinish", tag="other", state="Failed"): 1,  # its own name
    }
    assert router.value("callback_fanout_router_parse_seconds_count") == 8
    # Every published event is in one confirmed message; how many messages depends on timing.
    assert router.value("callback_fanout_router_batch_events_sum") == 7
    assert 1 <= router.value("callback_fanout_router_batch_events_count") <= 7
    assert router.value("callback_fanout_broker_connected", role="router") == 1


def _worker_counted(worker: Scrape) -> None:
    expected = {
        "flaky": {"handled": 1, "retried": 2},
        "broken": {"retried": 2, "parked": 1},
        "deduped": {"handled": 1, "duplicate": 1},
        "slow": {"retried": 2, "parked": 1, "timed_out": 3},
    }
    assert worker.series("callback_fanout_consumer_events_total") == {
        _labels(consumer=name, outcome=outcome): counts.get(outcome, 0)
        for name, counts in expected.items()
        for outcome in ("handled", "retried", "parked", "duplicate", "timed_out", "filtered")
    }
    runs = {"flaky": 3, "broken": 3, "deduped": 1, "slow": 3}
    for name, count in runs.items():
        handled = worker.value("callback_fanout_consumer_handle_seconds_count", consumer=name)
        assert handled == count
        assert worker.value("callback_fanout_consumer_in_flight", consumer=name) == 0
    slow_runs = worker.value("callback_fanout_consumer_handle_seconds_sum", consumer="slow")
    assert 0.6 <= slow_runs < 1.5  # three runs cut off at 0.2 s each
    lag = "callback_fanout_consumer_lag_seconds"
    assert worker.value(f"{lag}_count", consumer="flaky") == 1
    assert worker.value(f"{lag}_count", consumer="deduped") == 1
    assert worker.value(f"{lag}_count", consumer="broken") == 0
    # flaky succeeded on its third attempt, after the 0.2 s and 0.4 s retry delays
    assert 0.6 <= worker.value(f"{lag}_sum", consumer="flaky") < 30
    assert worker.value(f"{lag}_bucket", consumer="flaky", le="0.5") == 0
    assert worker.value("callback_fanout_broker_connected", role="worker") == 1


def _labels(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def _by(label: str, **counts: float) -> dict[frozenset[tuple[str, str]], float]:
    return {_labels(**{label: value}): count for value, count in counts.items()}
