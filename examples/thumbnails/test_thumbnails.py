"""The thumbnails consumer through the test kit: a snapshot job, a failed one, another kind."""

from __future__ import annotations

from structlog.testing import capture_logs
from thumbnails import thumbnails

from workers.testing.plugin import FanoutKit


async def test_every_image_of_a_snapshot_job_gets_a_thumbnail(fanout: FanoutKit) -> None:
    event = fanout.make_event(tag="Snapshot", state="Success")  # three images written
    with capture_logs() as logs:
        outcomes = await fanout.harness(thumbnails).run(event)
    assert [o.kind for o in outcomes] == ["handled"]
    made = [line for line in logs if line["event"] == "thumbnail"]
    assert [line["key"].rsplit("-", 1)[-1] for line in made] == ["0.jpg", "1.jpg", "2.jpg"]
    assert {(line["attempt"], line["request_id"]) for line in made} == {
        (1, event.envelope.request_id if event.envelope else None)
    }


async def test_a_failed_snapshot_is_parked_at_once(fanout: FanoutKit) -> None:
    harness = fanout.harness(thumbnails)  # its real policy: 5 attempts
    outcomes = await harness.run(fanout.make_event(tag="Snapshot", state="Failed"))
    assert [o.kind for o in outcomes] == ["parked"]  # GiveUp: no retry
    assert outcomes[0].reason == "GiveUp: snapshot failed: InternalError failed"


async def test_other_kinds_of_jobs_never_reach_it(fanout: FanoutKit) -> None:
    assert await fanout.harness(thumbnails).feed(fanout.seed("ocr.1.xml")) == []  # its routes
