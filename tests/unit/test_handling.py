"""One event's way through the runtime, no broker: each decision and what it carries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import pytest
from structlog.testing import capture_logs

from shared.callbacks.events import CallbackEvent
from shared.callbacks.filters import EventFilter
from shared.callbacks.operations import SnapshotOperation
from shared.errors import GiveUp, Retry
from shared.settings import Settings
from shared.topology import Topology
from shared.wire.events import Entry, encode
from shared.wire.framing import frame
from shared.wire.headers import (
    ATTEMPTS,
    CONSUMER,
    DEAD_AT,
    EVENT_COUNT,
    IDEMPOTENCY_KEY,
    LAST_ERROR,
    REQUEST_ID,
)
from workers import consumer
from workers.consumer import ConsumerSpec, LoadedConsumer
from workers.delivery import Delivery
from workers.middleware import CallNext, TimeLimit
from workers.runtime.dedupe import Claim, MemoryDedupeStore
from workers.runtime.handling import (
    ConsumerPolicy,
    Outcome,
    describe,
    handle_delivery,
    parked_headers,
    settle,
)
from workers.runtime.retry import RetryPolicy
from workers.testing import make_event

Behaviour = Callable[[CallbackEvent], Awaitable[None]]
RETRY = RetryPolicy(3, (1.0, 5.0, 30.0))


async def succeeds(event: CallbackEvent) -> None:
    return None


@dataclass
class Handler:
    """A consumer that records what it was given, then does what ``behaviour`` does."""

    name: str = "c"
    behaviour: Behaviour = succeeds
    calls: list[tuple[CallbackEvent, Delivery]] = field(default_factory=list)

    def loaded(self) -> LoadedConsumer:
        @consumer(name=self.name, routes=["#"])
        async def handle(event: CallbackEvent, delivery: Delivery) -> None:
            self.calls.append((event, delivery))
            await self.behaviour(event)

        return LoadedConsumer.from_target(handle, "test")


def raising(exc: Exception) -> Behaviour:
    async def fail(event: CallbackEvent) -> None:
        raise exc

    return fail


def policy(
    *, dedupe: bool = False, timeout: float = 5.0, chain: tuple[object, ...] = ()
) -> ConsumerPolicy:
    return ConsumerPolicy(
        retry=RETRY,
        timeout=timeout,
        concurrency=2,
        dedupe=dedupe,
        dedupe_window=600.0,
        chain=chain,  # type: ignore[arg-type]
    )


@dataclass
class Store:
    """A dedupe store that records every call and answers ``answer`` (or raises ``error``)."""

    answer: Claim = Claim.FIRST
    error: Exception | None = None
    calls: list[tuple[object, ...]] = field(default_factory=list)

    async def claim(self, key: str, hold: float) -> Claim:
        self.calls.append(("claim", key, hold))
        if self.error is not None:
            raise self.error
        return self.answer

    async def done(self, key: str, window: float) -> None:
        self.calls.append(("done", key, window))

    async def release(self, key: str) -> None:
        self.calls.append(("release", key))

    async def close(self) -> None:
        return None


# The policy of a consumer.


def test_a_consumer_s_own_policy_wins_over_every_setting() -> None:
    chosen = EventFilter.of({"code": "Success"})
    spec = ConsumerSpec(
        "own",
        ("#",),
        concurrency=3,
        max_attempts=7,
        retry_delays=(2.0,),
        timeout=4.0,
        dedupe=True,
        dedupe_window=10.0,
        filter=chosen,
    )
    settings = Settings.model_construct(concurrency=11, handler_timeout=9.0, dedupe_window=99.0)

    assert ConsumerPolicy.for_consumer(spec, settings) == ConsumerPolicy(
        retry=RetryPolicy(7, (2.0,)),
        timeout=4.0,
        concurrency=3,
        dedupe=True,
        dedupe_window=10.0,
        chain=(),
        filter=chosen,
    )


def test_the_settings_fill_in_what_a_consumer_leaves_open() -> None:
    spec = ConsumerSpec("plain", ("#",))
    settings = Settings.model_construct(
        concurrency=11, handler_timeout=9.0, dedupe_window=99.0, max_attempts=2
    )

    assert ConsumerPolicy.for_consumer(spec, settings) == ConsumerPolicy(
        retry=RetryPolicy(2, tuple(settings.retry_delays)),
        timeout=9.0,
        concurrency=11,
        dedupe=False,
        dedupe_window=99.0,
    )


def test_middleware_runs_outermost_first_with_the_consumer_s_timeout_innermost() -> None:
    async def outer(event: CallbackEvent, delivery: Delivery, call_next: CallNext) -> None:
        await call_next()

    spec = ConsumerSpec("own", ("#",), timeout=4.0)

    made = ConsumerPolicy.for_consumer(spec, Settings.model_construct(), [outer])

    assert made.chain == (outer, TimeLimit(4.0))


# What becomes of one delivery.


async def test_a_handled_event_runs_the_handler_once_with_its_delivery() -> None:
    async def slow(event: CallbackEvent) -> None:
        await asyncio.sleep(0.02)

    handler = Handler(behaviour=slow)
    event = make_event()
    assert event.envelope is not None

    outcome = await handle_delivery(handler.loaded(), policy(), encode(event), 1, None)

    assert (outcome.kind, outcome.attempt, outcome.attempts) == ("handled", 2, 2)
    assert outcome.event == event
    assert (outcome.reason, outcome.delay, outcome.timed_out, outcome.gave_up) == (
        None,
        None,
        False,
        False,
    )
    assert outcome.handler_seconds is not None
    assert 0.015 <= outcome.handler_seconds < 2  # the loop may wake a hair early
    [(given, delivery)] = handler.calls
    assert given == event
    assert delivery == Delivery.of(event, "c", 2, 3)
    assert (delivery.consumer, delivery.attempt, delivery.max_attempts) == ("c", 2, 3)


async def test_an_event_that_fails_validation_is_parked_without_running_the_handler() -> None:
    handler = Handler()

    outcome = await handle_delivery(handler.loaded(), policy(), Entry(b"{no", b""), 0, None)

    assert (outcome.kind, outcome.attempt, outcome.attempts, outcome.event) == (
        "parked",
        1,
        1,
        None,
    )
    assert outcome.reason is not None
    assert outcome.reason.startswith("event does not validate: 1 validation error")
    assert handler.calls == []


async def test_an_event_the_filter_refuses_is_filtered_and_costs_no_attempt() -> None:
    handler = Handler()
    refusing = ConsumerPolicy(RETRY, 5.0, 1, False, 1.0, filter=EventFilter.of({"code": "No"}))
    accepting = ConsumerPolicy(
        RETRY, 5.0, 1, False, 1.0, filter=EventFilter.of({"code": "Success"})
    )
    event = make_event()

    refused = await handle_delivery(handler.loaded(), refusing, encode(event), 2, None)
    taken = await handle_delivery(handler.loaded(), accepting, encode(event), 2, None)

    assert (refused.kind, refused.attempt, refused.attempts, refused.event) == (
        "filtered",
        3,
        2,
        event,
    )
    assert taken.kind == "handled"
    assert len(handler.calls) == 1


async def test_an_event_of_another_kind_than_the_handler_takes_is_parked_at_once() -> None:
    calls: list[object] = []

    @consumer(name="snaps", routes=["#"])
    async def snapshots(event: CallbackEvent[SnapshotOperation]) -> None:
        calls.append(event)

    event = make_event("Transcode")
    loaded = LoadedConsumer.from_target(snapshots, "test")

    outcome = await handle_delivery(loaded, policy(), encode(event), 0, None)

    assert (outcome.kind, outcome.attempt, outcome.attempts, outcome.event) == (
        "parked",
        1,
        1,
        event,
    )
    assert outcome.reason is not None
    assert "CallbackEvent[SnapshotOperation]" in outcome.reason
    assert calls == []
    assert (
        await handle_delivery(loaded, policy(), encode(make_event("Snapshot")), 0, None)
    ).handled


# Deduplication.


async def test_a_deduplicating_consumer_handles_two_different_events_and_drops_a_repeat() -> None:
    handler = Handler()
    loaded = handler.loaded()
    store = MemoryDedupeStore()
    first, second = make_event(), make_event()
    assert first.idempotency_key != second.idempotency_key

    outcomes = [
        await handle_delivery(loaded, policy(dedupe=True), encode(event), 0, store)
        for event in (first, second, first)
    ]

    assert [o.kind for o in outcomes] == ["handled", "handled", "duplicate"]
    assert [event for event, _ in handler.calls] == [first, second]
    assert (outcomes[2].attempt, outcomes[2].attempts, outcomes[2].event) == (1, 0, first)


async def test_two_consumers_deduplicate_the_same_event_each_for_itself() -> None:
    store = MemoryDedupeStore()
    event = make_event()
    a, b = Handler("a"), Handler("b")

    for handler in (a, b):
        outcome = await handle_delivery(
            handler.loaded(), policy(dedupe=True), encode(event), 0, store
        )
        assert outcome.handled

    assert len(a.calls) == len(b.calls) == 1


async def test_the_key_is_claimed_for_the_timeout_and_remembered_for_the_window() -> None:
    store = Store()
    event = make_event()

    outcome = await handle_delivery(
        Handler().loaded(), policy(dedupe=True, timeout=7.0), encode(event), 0, store
    )

    assert outcome.handled
    key = f"c:{event.idempotency_key}"
    assert store.calls == [("claim", key, 12.0), ("done", key, 600.0)]


async def test_a_failed_handler_releases_its_claim_so_a_retry_can_run() -> None:
    store = Store()
    event = make_event()
    handler = Handler(behaviour=raising(ValueError("boom")))

    outcome = await handle_delivery(handler.loaded(), policy(dedupe=True), encode(event), 0, store)

    assert outcome.retried
    key = f"c:{event.idempotency_key}"
    assert store.calls == [("claim", key, 10.0), ("release", key)]


async def test_a_replayed_event_or_a_consumer_that_does_not_deduplicate_uses_no_store() -> None:
    store = Store(answer=Claim.DONE)
    handler = Handler()

    replayed = await handle_delivery(
        handler.loaded(), policy(dedupe=True), encode(make_event()), 0, store, replayed=True
    )
    plain = await handle_delivery(handler.loaded(), policy(), encode(make_event()), 0, store)

    assert replayed.handled
    assert plain.handled
    assert store.calls == []
    assert len(handler.calls) == 2


@pytest.mark.parametrize(
    ("done", "kind", "attempts", "delay"),
    [
        (0, "retried", 0, 1.0),
        (1, "retried", 1, 1.0),
        (2, "retried", 2, 5.0),
        (3, "parked", 3, None),
    ],
)
async def test_an_event_another_handler_holds_is_retried_later_at_no_attempt_s_cost(
    done: int, kind: str, attempts: int, delay: float | None
) -> None:
    handler = Handler()

    event = make_event()

    outcome = await handle_delivery(
        handler.loaded(), policy(dedupe=True), encode(event), done, Store(Claim.BUSY)
    )

    assert (outcome.kind, outcome.attempt, outcome.attempts, outcome.delay) == (
        kind,
        done + 1,
        attempts,
        delay,
    )
    assert outcome.reason == "the same event is being handled"
    assert outcome.event == event
    assert handler.calls == []


@pytest.mark.parametrize(
    ("done", "kind", "delay"), [(0, "retried", 1.0), (1, "retried", 5.0), (2, "parked", None)]
)
async def test_a_dedupe_store_that_fails_costs_an_attempt_and_the_handler_never_runs(
    done: int, kind: str, delay: float | None
) -> None:
    handler = Handler()
    store = Store(error=ConnectionError("redis down"))
    event = make_event()

    outcome = await handle_delivery(
        handler.loaded(), policy(dedupe=True), encode(event), done, store
    )

    assert (outcome.kind, outcome.attempt, outcome.attempts, outcome.delay) == (
        kind,
        done + 1,
        done + 1,
        delay,
    )
    assert outcome.reason == "dedupe store: ConnectionError: redis down"
    assert outcome.event == event
    assert handler.calls == []


async def test_a_dedupe_store_that_fails_after_the_handler_succeeded_raises() -> None:
    class Failing(Store):
        async def done(self, key: str, window: float) -> None:
            raise ConnectionError("redis gone")

    with pytest.raises(ConnectionError, match="redis gone"):
        await handle_delivery(
            Handler().loaded(), policy(dedupe=True), encode(make_event()), 0, Failing()
        )


# Failures.


@pytest.mark.parametrize(
    ("done", "kind", "delay"),
    [(0, "retried", 1.0), (1, "retried", 5.0), (2, "parked", None)],
)
async def test_a_failing_handler_is_retried_after_each_step_then_parked(
    done: int, kind: str, delay: float | None
) -> None:
    handler = Handler(behaviour=raising(ValueError("boom")))

    outcome = await handle_delivery(handler.loaded(), policy(), encode(make_event()), done, None)

    assert (outcome.kind, outcome.attempt, outcome.attempts, outcome.delay) == (
        kind,
        done + 1,
        done + 1,
        delay,
    )
    assert (outcome.reason, outcome.timed_out, outcome.gave_up) == (
        "ValueError: boom",
        False,
        False,
    )
    assert outcome.handler_seconds is not None
    assert 0 <= outcome.handler_seconds < 2
    assert outcome.event is not None


async def test_give_up_parks_at_the_first_attempt() -> None:
    handler = Handler(behaviour=raising(GiveUp("not for us")))
    event = make_event()

    outcome = await handle_delivery(handler.loaded(), policy(), encode(event), 0, None)

    assert (outcome.kind, outcome.attempt, outcome.attempts, outcome.gave_up) == (
        "parked",
        1,
        1,
        True,
    )
    assert outcome.reason == "GiveUp: not for us"
    assert outcome.event == event
    assert outcome.handler_seconds is not None


async def test_a_validation_error_in_the_handler_is_not_retried() -> None:
    async def invalid(event: CallbackEvent) -> None:
        CallbackEvent.model_validate_json(b"{no")

    event = make_event()

    outcome = await handle_delivery(
        Handler(behaviour=invalid).loaded(), policy(), encode(event), 0, None
    )

    assert (outcome.kind, outcome.attempt, outcome.attempts, outcome.gave_up) == (
        "parked",
        1,
        1,
        False,
    )
    assert outcome.reason is not None
    assert outcome.reason.startswith("not retryable: pydantic_core._pydantic_core.Validation")
    assert outcome.event == event


@pytest.mark.parametrize(("done", "kind"), [(0, "retried"), (2, "parked")])
async def test_a_handler_cut_off_by_its_timeout_is_retried_then_parked_as_timed_out(
    done: int, kind: str
) -> None:
    async def hangs(event: CallbackEvent) -> None:
        await asyncio.sleep(10)

    event = make_event()

    outcome = await handle_delivery(
        Handler(behaviour=hangs).loaded(), policy(timeout=0.05), encode(event), done, None
    )

    assert (outcome.kind, outcome.attempt, outcome.attempts) == (kind, done + 1, done + 1)
    assert outcome.timed_out
    assert outcome.event == event
    assert outcome.reason == "timed out after 0.05s"
    assert outcome.handler_seconds is not None
    assert 0.04 <= outcome.handler_seconds < 2


@pytest.mark.parametrize(("requested", "delay"), [(30.0, 30.0), (2.0, 5.0), (None, 1.0)])
async def test_retry_with_a_delay_waits_the_step_it_asked_for(
    requested: float | None, delay: float
) -> None:
    handler = Handler(behaviour=raising(Retry("later", delay=requested)))

    outcome = await handle_delivery(handler.loaded(), policy(), encode(make_event()), 0, None)

    assert (outcome.kind, outcome.delay, outcome.reason) == (
        "retried",
        delay,
        "shared.errors.Retry: later",
    )


async def test_a_retry_s_delay_holds_at_any_attempt_and_not_for_other_errors() -> None:
    handler = Handler(behaviour=raising(Retry(delay=1.0)))

    outcome = await handle_delivery(handler.loaded(), policy(), encode(make_event()), 1, None)

    assert (outcome.kind, outcome.delay) == ("retried", 1.0)  # the second step would be 5


async def test_the_middleware_chain_runs_around_the_handler_under_the_timeout() -> None:
    seen: list[tuple[str, int]] = []

    async def around(event: CallbackEvent, delivery: Delivery, call_next: CallNext) -> None:
        seen.append((event.idempotency_key, delivery.attempt))
        await call_next()

    async def hangs(event: CallbackEvent) -> None:
        await asyncio.sleep(10)

    event = make_event()
    chained = policy(timeout=5.0, chain=(around, TimeLimit(0.05)))
    quick, slow = Handler(), Handler(behaviour=hangs)

    handled = await handle_delivery(quick.loaded(), chained, encode(event), 0, None)
    cut = await handle_delivery(slow.loaded(), chained, encode(event), 0, None)

    assert handled.handled
    assert len(quick.calls) == 1
    assert (cut.kind, cut.timed_out) == ("retried", True)
    assert cut.reason == "timed out after 5s"  # the reason names the consumer's timeout
    assert seen == [(event.idempotency_key, 1), (event.idempotency_key, 1)]


async def test_a_cancelled_handler_is_not_an_outcome() -> None:
    handler = Handler(behaviour=raising(asyncio.CancelledError()))  # type: ignore[arg-type]
    store = Store()

    with pytest.raises(asyncio.CancelledError):
        await handle_delivery(handler.loaded(), policy(dedupe=True), encode(make_event()), 0, store)


def test_an_outcome_says_what_kind_it_is() -> None:
    kinds = ("handled", "duplicate", "retried", "parked", "filtered")
    for kind in kinds:
        outcome = Outcome(kind, 1, 1)  # type: ignore[arg-type]
        assert [outcome.handled, outcome.duplicate, outcome.retried, outcome.parked] == [
            kind == k for k in kinds[:4]
        ]


def test_an_error_is_described_on_one_line_by_its_type_and_message() -> None:
    assert describe(ValueError("boom")) == "ValueError: boom"
    assert describe(KeyError("k")) == "KeyError: 'k'"


# Settling on the broker.

QUEUES = Topology("p").consumer("c", [1.0, 5.0, 30.0])


@dataclass
class Source:
    headers: dict[str, object] = field(
        default_factory=lambda: {EVENT_COUNT: 3, IDEMPOTENCY_KEY: "batch", REQUEST_ID: "batch"}
    )
    content_type: str = "application/vnd.callback-fanout.events+v1"
    message_id: str = "m1"
    timestamp: object = None


@dataclass
class Published:
    sent: list[tuple[aio_pika.Message, str]] = field(default_factory=list)

    async def __call__(self, message: aio_pika.Message, queue: str) -> None:
        self.sent.append((message, queue))


async def settled(
    outcome: Outcome, entry: Entry
) -> tuple[Published, list[MutableMapping[str, Any]]]:
    publish = Published()
    with capture_logs() as logs:
        await settle(
            outcome,
            entry,
            Source(),  # type: ignore[arg-type]
            consumer="c",
            queues=QUEUES,
            publish=publish,
        )
    return publish, logs


@pytest.mark.parametrize(
    ("kind", "log"),
    [
        ("handled", ("handled", "debug")),
        ("filtered", ("filtered out", "debug")),
        ("duplicate", ("duplicate dropped", "info")),
    ],
)
async def test_a_handled_filtered_or_duplicate_event_publishes_nothing(
    kind: str, log: tuple[str, str]
) -> None:
    event = make_event()
    outcome = Outcome(kind, 1, 1, event, handler_seconds=0.123456)  # type: ignore[arg-type]

    publish, logs = await settled(outcome, encode(event))

    assert publish.sent == []
    assert [(e["event"], e["log_level"]) for e in logs] == [log]
    if kind == "handled":
        assert logs[0]["elapsed"] == 0.1235
    if kind == "duplicate":
        assert logs[0]["idempotency_key"] == event.idempotency_key


async def test_a_handled_event_without_a_time_logs_zero() -> None:
    _, logs = await settled(Outcome("handled", 1, 1), encode(make_event()))

    assert logs[0]["elapsed"] == 0.0


async def test_a_retried_event_leaves_alone_for_its_delay_queue_with_its_attempts() -> None:
    event = make_event()
    entry = encode(event)
    outcome = Outcome("retried", 2, 2, event, "E" * 5000, 5.0)

    publish, logs = await settled(outcome, entry)

    [(message, queue)] = publish.sent
    assert queue == QUEUES.delay_queue(5.0) == "p.consumer.c.delay.5000ms"
    assert message.body == frame(entry.doc, entry.raw or b"")
    assert message.headers is not None
    assert message.headers[ATTEMPTS] == 2
    assert message.headers[EVENT_COUNT] == 1
    assert message.headers[IDEMPOTENCY_KEY] == event.idempotency_key  # the event's, not the batch's
    assert event.envelope is not None
    assert message.headers[REQUEST_ID] == event.envelope.request_id
    assert message.headers[LAST_ERROR] == "E" * 4000
    assert message.message_id == "m1"
    assert [(e["event"], e["log_level"], e["retry_in"]) for e in logs] == [
        ("handler failed, will retry", "warning", 5.0)
    ]
    assert logs[0]["error"] == "E" * 5000


async def test_a_parked_event_leaves_alone_for_the_dead_queue_saying_why() -> None:
    event = make_event()
    outcome = Outcome("parked", 3, 3, event, "ValueError: boom")

    publish, logs = await settled(outcome, encode(event))

    [(message, queue)] = publish.sent
    assert queue == QUEUES.dead == "p.consumer.c.dead"
    assert message.headers is not None
    assert message.headers[ATTEMPTS] == 3
    assert message.headers[LAST_ERROR] == "ValueError: boom"
    assert message.headers[CONSUMER] == "c"
    assert message.headers[IDEMPOTENCY_KEY] == event.idempotency_key
    assert event.envelope is not None
    assert message.headers[REQUEST_ID] == event.envelope.request_id
    assert [(e["event"], e["log_level"], e["error"], e["queue"]) for e in logs] == [
        ("event parked in dead queue", "error", "ValueError: boom", "p.consumer.c.dead")
    ]


async def test_an_event_without_a_reason_carries_an_empty_one() -> None:
    entry = Entry(b"{no", b"")

    publish, _ = await settled(Outcome("retried", 1, 1, None, None, 1.0), entry)

    [(message, _queue)] = publish.sent
    assert message.headers is not None
    assert message.headers[LAST_ERROR] == ""


def test_a_parked_copy_says_why_after_how_many_tries_and_when_in_whole_seconds() -> None:
    before = int(time.time())

    headers = parked_headers(Outcome("parked", 4, 4, None, "x" * 4500), "c")

    after = int(time.time())
    dead_at = headers.pop(DEAD_AT)
    assert type(dead_at) is int
    assert before <= dead_at <= after
    assert headers == {ATTEMPTS: 4, LAST_ERROR: "x" * 4000, CONSUMER: "c"}
    assert parked_headers(Outcome("parked", 1, 1), "c")[LAST_ERROR] == ""
