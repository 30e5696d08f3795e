"""The author's surface in the test kit: what the runtime does with the operation an
annotation asks for, the delivery's facts, and middleware around the handler."""

from __future__ import annotations

import asyncio

import pytest

from workers import (
    CallbackEvent,
    CallNext,
    Delivery,
    GiveUp,
    ImageOCROperation,
    SnapshotOperation,
    consumer,
)
from workers.testing import make_event
from workers.testing.plugin import FanoutKit


@consumer(name="snapshots", routes=["#"], max_attempts=3)
async def snapshots(event: CallbackEvent[SnapshotOperation]) -> None:
    assert isinstance(event.operation, SnapshotOperation)


@consumer(name="maybe-snapshots", routes=["#"])
async def maybe_snapshots(event: CallbackEvent[SnapshotOperation | None]) -> None: ...


async def test_an_event_of_another_kind_is_parked_at_once_naming_both_kinds(
    fanout: FanoutKit,
) -> None:
    [outcome] = await fanout.harness(snapshots).run(make_event(tag="Transcode"))
    assert (outcome.kind, outcome.attempt, outcome.handler_seconds) == ("parked", 1, None)
    assert outcome.reason == (
        "kind mismatch: 'snapshots' takes a Snapshot operation (CallbackEvent[SnapshotOperation])"
        ", event TaskFinish.Transcode.Success carries a Transcode operation (TranscodeOperation)"
    )
    assert (await fanout.harness(snapshots).deliver(make_event(tag="Snapshot"))).handled


async def test_an_event_without_an_operation_is_taken_only_when_the_annotation_says_none(
    fanout: FanoutKit,
) -> None:
    body = b"""<Response><EventName>TaskFinish</EventName><JobsDetail><JobId>j1</JobId>
        <Tag>Snapshot</Tag><State>Failed</State><Code>InputInvalid</Code></JobsDetail></Response>"""
    [strict] = await fanout.harness(snapshots).feed(body)
    [lenient] = await fanout.harness(maybe_snapshots).feed(body)
    assert strict.parked
    assert strict.reason == (
        "kind mismatch: 'snapshots' takes a Snapshot operation (CallbackEvent[SnapshotOperation])"
        ", event TaskFinish.Snapshot.Failed carries no operation "
        "(declare CallbackEvent[SnapshotOperation | None] to take it)"
    )
    assert lenient.handled


async def test_the_delivery_counts_the_tries_and_knows_the_last(fanout: FanoutKit) -> None:
    seen: list[Delivery] = []

    @consumer(name="tries", routes=["#"], max_attempts=3, retry_delays=[1])
    async def tries(event: CallbackEvent[ImageOCROperation], delivery: Delivery) -> None:
        seen.append(delivery)
        raise RuntimeError("no")

    event = make_event(tag="ImageOCR")
    outcomes = await fanout.harness(tries).run(event)
    assert [o.kind for o in outcomes] == ["retried", "retried", "parked"]
    assert [(d.attempt, d.max_attempts, d.last_attempt) for d in seen] == [
        (1, 3, False),
        (2, 3, False),
        (3, 3, True),
    ]
    assert event.envelope is not None
    assert {d.request_id for d in seen} == {event.envelope.request_id}


class Journal:
    """A middleware that writes down what passes through it."""

    def __init__(self, name: str, lines: list[str]) -> None:
        self.name = name
        self.lines = lines

    async def __call__(self, event: CallbackEvent, delivery: Delivery, call_next: CallNext) -> None:
        self.lines.append(f"{self.name} before try {delivery.attempt}")
        try:
            await call_next()
        except Exception as exc:
            self.lines.append(f"{self.name} saw {type(exc).__name__}")
            raise
        self.lines.append(f"{self.name} after")


async def test_middleware_runs_outermost_first_and_sees_the_handlers_timeout(
    fanout: FanoutKit,
) -> None:
    lines: list[str] = []

    @consumer(name="slow", routes=["#"], timeout=0.05, max_attempts=2)
    async def slow(event: CallbackEvent) -> None:
        lines.append("handler")
        await asyncio.sleep(5)

    chain = [Journal("outer", lines), Journal("inner", lines)]
    outcomes = await fanout.harness(slow, middleware=chain).run(make_event())
    assert [(o.kind, o.timed_out, o.reason) for o in outcomes] == [
        ("retried", True, "timed out after 0.05s"),
        ("parked", True, "timed out after 0.05s"),
    ]
    assert lines[:5] == [
        "outer before try 1",
        "inner before try 1",
        "handler",
        "inner saw TimeoutError",
        "outer saw TimeoutError",
    ]


async def test_the_handlers_timeout_does_not_count_the_middlewares_time(
    fanout: FanoutKit,
) -> None:
    async def slow_to_start(event: CallbackEvent, delivery: Delivery, call_next: CallNext) -> None:
        await asyncio.sleep(0.2)  # four times the handler's limit
        await call_next()

    @consumer(name="quick", routes=["#"], timeout=0.05)
    async def quick(event: CallbackEvent) -> None: ...

    [outcome] = await fanout.harness(quick, middleware=[slow_to_start]).run(make_event())
    assert outcome.handled
    assert outcome.handler_seconds is not None
    assert outcome.handler_seconds >= 0.2


@pytest.mark.parametrize(
    ("turns_into", "kind", "reason"),
    [
        (None, "handled", None),  # swallowed
        (GiveUp("reported, not retried"), "parked", "GiveUp: reported, not retried"),
    ],
)
async def test_what_escapes_the_middleware_decides_the_outcome(
    fanout: FanoutKit, turns_into: Exception | None, kind: str, reason: str | None
) -> None:
    async def catching(event: CallbackEvent, delivery: Delivery, call_next: CallNext) -> None:
        try:
            await call_next()
        except RuntimeError:
            if turns_into is not None:
                raise turns_into from None

    @consumer(name="failing", routes=["#"])
    async def failing(event: CallbackEvent) -> None:
        raise RuntimeError("boom")

    [outcome] = await fanout.harness(failing, middleware=[catching]).run(make_event())
    assert (outcome.kind, outcome.reason) == (kind, reason)
