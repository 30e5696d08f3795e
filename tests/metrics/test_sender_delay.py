"""The sender's own delay: from a job's EndTime (the vendor's clock) to the ingress's receipt
(ours), observed by the router per tag; a job that ended after we received it (clock skew)
is counted apart and never observed as a delay."""

from __future__ import annotations

import pytest

from shared.callbacks.parser import parse_callback
from shared.settings import Settings
from shared.wire.facts import RequestFacts
from tests.conftest import SEEDS
from tests.support.broker import BrokerClient
from tests.support.metrics import scrape
from tests.support.system import RunningSystem
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

OCR = (SEEDS / "ocr.1.xml").read_bytes()  # EndTime 2023-11-25T08:47:40+0800, tag ImageOCR
DELAY = "callback_fanout_sender_delay_seconds"
NEGATIVE = "callback_fanout_sender_delay_negative_total"


async def test_the_router_observes_the_delay_from_end_time_to_receipt_and_counts_skew_apart(
    settings: Settings, broker: BrokerClient
) -> None:
    [event] = parse_callback(OCR)
    assert event.end_time is not None
    ended = event.end_time.timestamp()
    system = await RunningSystem.start(settings, ingress=False, worker=False, admin=True)
    try:
        # received 42 s and 700 s after the job ended, and 5 s before (the vendor's clock ahead)
        for n, delay in enumerate((42.0, 700.0, -5.0)):
            facts = RequestFacts(f"req-{n}", ended + delay, "application/xml", "127.0.0.1")
            await broker.channel.default_exchange.publish(
                facts.message(OCR), routing_key=broker.topology.raw
            )

        async def routed() -> bool:
            scraped = await scrape(system.http, system.admin_url("router"))
            return scraped.value("callback_fanout_router_bodies_total", outcome="routed") == 3

        await eventually(routed, timeout=20)
        scraped = await scrape(system.http, system.admin_url("router"))
    finally:
        await system.stop()

    buckets = {
        dict(labels)["le"]: value
        for labels, value in scraped.series(f"{DELAY}_bucket").items()
        if dict(labels)["tag"] == "ImageOCR"
    }
    assert {le: buckets[le] for le in ("30.0", "60.0", "600.0", "900.0", "+Inf")} == {
        "30.0": 0,
        "60.0": 1,
        "600.0": 1,
        "900.0": 2,
        "+Inf": 2,  # the negative one is not among them
    }
    assert scraped.value(f"{DELAY}_count", tag="ImageOCR") == 2
    assert scraped.value(f"{DELAY}_sum", tag="ImageOCR") == pytest.approx(742.0, abs=0.01)
    assert scraped.value(NEGATIVE, tag="ImageOCR") == 1
    others = {labels: n for labels, n in scraped.series(NEGATIVE).items() if n}
    assert others == {frozenset({("tag", "ImageOCR")}): 1.0}  # every other tag at 0
