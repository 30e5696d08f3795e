"""The billing consumer through the test kit: its filter decides which events it handles."""

from __future__ import annotations

from billing import billing

from workers import Breaker
from workers.consumer import SPEC_ATTRIBUTE
from workers.testing.plugin import FanoutKit

PROD = {"BucketId": "media-prod-1250000000", "Object": "in/a.mp4", "Region": "ap-guangzhou"}


async def test_a_production_job_that_succeeded_is_billed(fanout: FanoutKit) -> None:
    async with fanout.harness(billing) as harness:
        outcome = await harness.deliver(fanout.make_event(tag="Transcode", input=PROD))
    assert outcome.kind == "handled"


async def test_a_failed_job_and_another_bucket_are_filtered_out(fanout: FanoutKit) -> None:
    elsewhere = {**PROD, "BucketId": "scratch-1250000000"}
    async with fanout.harness(billing) as harness:
        failed = await harness.deliver(fanout.make_event(state="Failed", input=PROD))
        other = await harness.deliver(fanout.make_event(input=elsewhere))
    assert (failed.kind, other.kind) == ("filtered", "filtered")  # acked, never handled


def test_it_holds_its_destination() -> None:
    spec = getattr(billing, SPEC_ATTRIBUTE)  # what @consumer declared
    assert spec.rate_limit == 20
    assert spec.breaker == Breaker(failures=10, cool_down=60)
