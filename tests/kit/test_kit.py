"""The consumer test kit, tested with itself (the ``fanout`` fixture of its pytest plugin)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pydantic
import pytest

from shared.callbacks.events import OPERATION_MODELS
from shared.callbacks.moderation import MODERATION_EVENTS
from shared.errors import ParseError
from shared.settings import Settings
from tests.conftest import SEEDS
from workers import CallbackEvent, Consumer, GiveUp, Retry, consumer
from workers.testing import ConsumerHarness, NotRouted, make_event, parse_body, seed, seed_names
from workers.testing.plugin import FanoutKit

TASK_TAGS = sorted(tag for tag in OPERATION_MODELS if tag not in MODERATION_EVENTS)


def recording(name: str, routes: list[str], **policy: object) -> tuple[object, list[CallbackEvent]]:
    seen: list[CallbackEvent] = []

    @consumer(name=name, routes=routes, **policy)  # type: ignore[arg-type]
    async def handle(event: CallbackEvent) -> None:
        seen.append(event)

    return handle, seen


def failing(name: str, error: BaseException, **policy: object) -> tuple[object, list[int]]:
    calls: list[int] = []

    @consumer(name=name, routes=["#"], **policy)  # type: ignore[arg-type]
    async def handle(event: CallbackEvent) -> None:
        calls.append(1)
        raise error

    return handle, calls


async def test_a_seed_body_goes_through_the_real_parser_to_the_handler(fanout: FanoutKit) -> None:
    handle, seen = recording("ocr", ["TaskFinish.ImageOCR.*"])
    [outcome] = await fanout.harness(handle).feed(fanout.seed("ocr.1.xml"))
    assert outcome.handled
    assert (outcome.kind, outcome.attempt, outcome.delay, outcome.reason) == (
        "handled",
        1,
        None,
        None,
    )
    [event] = seen
    assert event.job_id == "a3c193f288b2c11eeb60f39de2f86f409"
    assert event.routing_key == "TaskFinish.ImageOCR.Success"
    assert event.envelope is not None
    assert event.envelope.raw_body == seed("ocr.1.xml")  # what the router gives a consumer


async def test_a_file_and_bytes_feed_alike_and_unbound_events_are_not_delivered(
    fanout: FanoutKit,
) -> None:
    handle, seen = recording("translations", ["TaskFinish.Translation.#"])
    harness = fanout.harness(handle)
    assert await harness.feed(SEEDS / "ocr.1.xml") == []  # its routes do not match OCR
    [from_file] = await harness.feed(SEEDS / "translation.1.json")
    [from_bytes] = await harness.feed(seed("translation.1.xml"))
    assert from_file.handled
    assert from_bytes.handled
    assert [e.job_id for e in seen] == [
        "ac34be3aa0bf411ed9ce39d7cc972e427",
        "ac34be3aa0bf411ed9ce39d7cc972e427",
    ]


async def test_a_failing_handler_is_retried_with_each_delay_then_parked(fanout: FanoutKit) -> None:
    handle, calls = failing("flaky", RuntimeError("upstream down"), retry_delays=[1, 10])
    outcomes = await fanout.harness(handle).run(make_event())  # max_attempts: the default, 5
    assert [o.kind for o in outcomes] == ["retried"] * 4 + ["parked"]
    assert [o.attempt for o in outcomes] == [1, 2, 3, 4, 5]
    assert [o.delay for o in outcomes] == [1, 10, 10, 10, None]  # the last delay repeats
    assert {o.reason for o in outcomes} == {"RuntimeError: upstream down"}
    assert len(calls) == 5


async def test_the_settings_fill_in_what_the_declaration_leaves_open(fanout: FanoutKit) -> None:
    handle, _ = failing("defaults", RuntimeError("no"))
    settings = Settings.model_construct(max_attempts=2, retry_delays=[3.0])
    outcomes = await fanout.harness(handle, settings=settings).run(make_event())
    assert [(o.kind, o.delay) for o in outcomes] == [("retried", 3.0), ("parked", None)]


async def test_retry_with_a_delay_picks_the_shortest_step_at_least_that_long(
    fanout: FanoutKit,
) -> None:
    handle, _ = failing("later", Retry("rate limited", delay=7), retry_delays=[5, 30, 120])
    outcome = await fanout.harness(handle).deliver(make_event(), attempt=2)
    assert (outcome.kind, outcome.attempt, outcome.delay) == ("retried", 2, 30)
    assert outcome.reason == "shared.errors.Retry: rate limited"


async def test_give_up_and_a_validation_error_park_at_once(fanout: FanoutKit) -> None:
    quitter, calls = failing("quitter", GiveUp("bad input"), max_attempts=5)
    [outcome] = await fanout.harness(quitter).run(make_event())
    assert (outcome.kind, outcome.attempt, outcome.reason) == ("parked", 1, "GiveUp: bad input")
    assert len(calls) == 1

    try:
        CallbackEvent.model_validate({"job_count": "many"})
    except pydantic.ValidationError as exc:
        invalid = exc
    strict, _ = failing("strict", invalid)
    [outcome] = await fanout.harness(strict).run(make_event())
    assert outcome.parked
    assert outcome.reason is not None
    assert outcome.reason.startswith("not retryable: ")


async def test_a_handler_over_its_timeout_is_cut_off_and_retried(fanout: FanoutKit) -> None:
    finished: list[bool] = []

    @consumer(name="slow", routes=["#"], timeout=0.05, max_attempts=2, retry_delays=[4])
    async def slow(event: CallbackEvent) -> None:
        await asyncio.sleep(5)
        finished.append(True)

    outcomes = await fanout.harness(slow).run(make_event())
    assert [(o.kind, o.timed_out, o.delay) for o in outcomes] == [
        ("retried", True, 4),
        ("parked", True, None),
    ]
    assert outcomes[0].reason == "timed out after 0.05s"
    assert finished == []


async def test_a_deduplicating_consumer_drops_the_second_copy_a_plain_one_handles_both(
    fanout: FanoutKit,
) -> None:
    event = make_event(tag="Snapshot")
    dedupes, seen_once = recording("dedupes", ["#"], dedupe=True)
    plain, seen_twice = recording("plain", ["#"])
    once, twice = fanout.harness(dedupes), fanout.harness(plain)
    assert [(await once.deliver(event)).kind for _ in range(2)] == ["handled", "duplicate"]
    assert [(await twice.deliver(event)).kind for _ in range(2)] == ["handled", "handled"]
    assert len(seen_once) == 1
    assert len(seen_twice) == 2
    # the same callback body sent twice (the sender retried) is the same event
    body = seed("pic-process.1.json")
    harness = fanout.harness(recording("again", ["#"], dedupe=True)[0])
    assert [o.kind for o in await harness.feed(body)] == ["handled"]
    assert [o.kind for o in await harness.feed(body)] == ["duplicate"]


async def test_a_failed_attempt_releases_the_key_so_the_retry_runs(fanout: FanoutKit) -> None:
    calls: list[int] = []

    @consumer(name="second-time", routes=["#"], dedupe=True)
    async def handle(event: CallbackEvent) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first try fails")

    outcomes = await fanout.harness(handle).run(make_event())
    assert [o.kind for o in outcomes] == ["retried", "handled"]


async def test_an_event_outside_the_routes_is_refused_as_never_delivered(
    fanout: FanoutKit,
) -> None:
    handle, seen = recording("failures", ["TaskFinish.*.Failed"])
    harness = fanout.harness(handle)
    with pytest.raises(NotRouted, match=r"TaskFinish\.Transcode\.Success"):
        await harness.deliver(make_event(tag="Transcode", state="Success"))
    assert (await harness.deliver(make_event(tag="Transcode", state="Failed"))).handled
    assert len(seen) == 1


async def test_a_body_that_does_not_parse_raises_the_parse_error(fanout: FanoutKit) -> None:
    handle, _ = recording("any", ["#"])
    with pytest.raises(ParseError):
        await fanout.harness(handle).feed(b'{"JobsDetail": [')


async def test_a_class_consumer_gets_its_hooks_around_the_deliveries(fanout: FanoutKit) -> None:
    journal: list[str] = []

    @consumer(name="hooks", routes=["#"])
    class Hooks(Consumer):
        async def startup(self) -> None:
            journal.append("startup")

        async def shutdown(self) -> None:
            journal.append("shutdown")

        async def handle(self, event: CallbackEvent) -> None:
            journal.append(event.tag)

    async with fanout.harness(Hooks) as harness:
        await harness.deliver(make_event(tag="Animation"))
        await harness.deliver(make_event(tag="Concat"))
    assert journal == ["startup", "Animation", "Concat", "shutdown"]


@pytest.mark.parametrize("tag", [*TASK_TAGS, "SomeFutureTask"])
@pytest.mark.parametrize("state", ["Success", "Failed"])
def test_make_event_builds_a_valid_event_for_any_task_type_and_state(tag: str, state: str) -> None:
    event = make_event(tag=tag, state=state)
    assert event.routing_key == f"TaskFinish.{tag}.{state}"
    assert (event.tag, event.state) == (tag, state)
    assert event.code == ("Success" if state == "Success" else "InternalError")
    expected = OPERATION_MODELS.get(tag)
    assert type(event.operation).__name__ == (expected.__name__ if expected else "GenericOperation")
    assert CallbackEvent.model_validate_json(event.model_dump_json()) == event
    assert make_event(tag=tag, state=state).idempotency_key != event.idempotency_key


def test_make_event_takes_the_vendors_fields() -> None:
    event = make_event(
        tag="Transcode",
        state="Failed",
        code="InputFileInvalid",
        message="bad input",
        job_id="j1",
        input={"Object": "in/a.mp4", "BucketId": "b-1250000000", "Region": "ap-guangzhou"},
        operation={"MediaResult": {"OutputFile": {"ObjectName": ["out/a.mp4"]}}},
        QueueId="pq",
    )
    assert (event.code, event.message, event.job_id, event.queue_id) == (
        "InputFileInvalid",
        "bad input",
        "j1",
        "pq",
    )
    assert event.input is not None
    assert event.input.object == "in/a.mp4"
    dumped = event.model_dump(mode="json", by_alias=True)
    assert json.dumps(dumped["Operation"]).count("out/a.mp4") == 1


def test_the_bundled_seeds_are_the_fixtures_byte_for_byte() -> None:
    fixtures = sorted(p.name for p in SEEDS.iterdir() if p.suffix in (".xml", ".json"))
    assert seed_names() == fixtures
    for name in fixtures:
        assert seed(name) == (SEEDS / name).read_bytes(), name
    with pytest.raises(ValueError, match=r"no seed example 'nope\.xml'"):
        seed("nope.xml")


def test_every_seed_parses_as_the_router_would() -> None:
    for name in seed_names():
        events = parse_body(seed(name))
        assert events, name
        assert all(e.envelope is not None and e.envelope.raw_body == seed(name) for e in events)


async def test_a_configured_builtin_runs_in_the_harness_under_its_configured_policy(
    tmp_path: Path,
) -> None:
    from shared.configfile import ConfigFile
    from workers.configured import configured_consumers

    config = tmp_path / "fanout.toml"
    config.write_text('[consumers.audit]\nuse = "log"\nroutes = ["TaskFinish.*.Failed"]\n')
    [audit] = configured_consumers(ConfigFile.read(config), {})
    async with ConsumerHarness(audit) as harness:
        assert (await harness.deliver(make_event(state="Failed"))).handled
        assert not harness.routes_to(make_event(state="Success"))


async def test_the_readme_example_runs_as_written(fanout: FanoutKit) -> None:
    @consumer(name="thumbnails", routes=["TaskFinish.Snapshot.*"], concurrency=16, max_attempts=5)
    async def thumbnails(event: CallbackEvent) -> None:
        if event.state != "Success":
            raise GiveUp(f"snapshot failed: {event.code} {event.message}")

    harness = fanout.harness(thumbnails)
    outcomes = await harness.run(fanout.make_event(tag="Snapshot", state="Failed"))
    assert [o.kind for o in outcomes] == ["parked"]
    assert outcomes[0].reason is not None
    assert outcomes[0].reason.startswith("GiveUp: snapshot failed: InternalError")
    assert await harness.feed(fanout.seed("ocr.1.xml")) == []
