"""Operating the parking queues with `callback-fanout parked`, against the real broker."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from callback_fanout.cli import _build_parser, _parked, _settings_from
from shared.callbacks.events import Envelope
from shared.callbacks.parser import parse_callback
from shared.settings import Settings
from shared.wire.events import encode, events_message
from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.parked_command import parked
from tests.support.system import START_TIMEOUT, Recorder, RunningSystem
from tests.support.terminal import at_terminal, piped
from tests.support.waiting import eventually
from workers.router.service import RouterService

pytestmark = pytest.mark.broker

JOB_ID = "a3c193f288b2c11eeb60f39de2f86f409"
GARBAGE = b"\x00not a callback at all"
WORKFLOW = (
    b"<Response><EventName>WorkflowFinish</EventName><WorkflowExecution><RunId>r-1</RunId>"
    b"<WorkflowId>w-1</WorkflowId><State>Success</State></WorkflowExecution></Response>"
)
MODERATION = (
    b'{"EventName":"ReviewImage","JobsDetail":{"JobId":"si1","State":"Success",'
    b'"Object":"a.jpg","Label":"Normal","Result":0}}'
)
PARKED_CONSUMERS = "tests.support.parked_consumers"


@dataclass
class ParkedWorld:
    """The system that parked one message in each parking queue, and its doomed consumer."""

    doomed: Recorder
    system: RunningSystem

    @property
    def settings(self) -> Settings:
        return self.system.settings


@pytest.fixture
async def parked_world(start_system: StartSystem, broker: BrokerClient) -> ParkedWorld:
    """One message in each parking queue: unparsed, unrouted, and doomed's dead queue."""
    doomed = Recorder("doomed", ["TaskFinish.ImageOCR.*"], always_fail=True, max_attempts=2)
    system = await start_system([doomed])
    for body in (GARBAGE, WORKFLOW, (SEEDS / "ocr.1.xml").read_bytes()):
        assert (await system.post(body)).status == 200
    t = broker.topology
    dead = t.consumer("doomed", system.settings.retry_delays).dead
    for queue in (t.unparsed, t.unrouted, dead):
        await eventually(functools.partial(broker.count_is, queue, 1))
    return ParkedWorld(doomed, system)


async def test_list_counts_every_parking_queue(
    parked_world: ParkedWorld, capsys: pytest.CaptureFixture[str], broker: BrokerClient
) -> None:
    settings = parked_world.settings
    broker.track(["log"], settings.retry_delays)  # listing declares log's dead queue
    out = await parked(
        settings, capsys, "list", "--consumer", "log", "--consumer", PARKED_CONSUMERS
    )
    counts = {line.split()[1]: int(line.split()[0]) for line in out.splitlines()}
    assert counts == {
        f"{settings.prefix}.unparsed": 1,
        f"{settings.prefix}.unrouted": 1,
        f"{settings.prefix}.consumer.log.dead": 0,
        f"{settings.prefix}.consumer.doomed.dead": 1,
    }


async def test_show_prints_reason_attempts_and_body_without_removing_anything(
    parked_world: ParkedWorld,
    capsys: pytest.CaptureFixture[str],
    broker: BrokerClient,
) -> None:
    settings = parked_world.settings
    out = await parked(settings, capsys, "show", "doomed", "--reason", "fails on purpose")
    [line] = out.splitlines()
    shown = json.loads(line)
    assert shown["attempts"] == 2
    assert shown["job_id"] == "a3c193f288b2c11eeb60f39de2f86f409"
    assert shown["routing_key"] == "TaskFinish.ImageOCR.Success"
    assert "doomed fails on purpose (call 2)" in shown["reason"]

    out = await parked(settings, capsys, "show", "unparsed", "--body")
    [line] = out.splitlines()
    assert json.loads(line)["body"] == GARBAGE.decode()
    assert await parked(settings, capsys, "show", "doomed", "--job-id", "other") == ""
    dead = broker.topology.consumer("doomed", settings.retry_delays).dead
    assert await broker.count(dead) == 1  # showing removed nothing


async def test_replay_sends_a_dead_event_back_to_its_consumer_with_attempts_reset(
    parked_world: ParkedWorld,
    capsys: pytest.CaptureFixture[str],
    broker: BrokerClient,
) -> None:
    doomed, settings = parked_world.doomed, parked_world.settings
    dead = broker.topology.consumer("doomed", settings.retry_delays).dead
    out = await parked(settings, capsys, "replay", "doomed", "--dry-run")
    assert out.strip() == f"would replay 1 from {dead}"
    assert await broker.count(dead) == 1

    # The consumer's bug is fixed but it fails once more: with its attempts reset the replayed
    # event is retried (attempt 1, then 2 of max_attempts=2); with the dead message's
    # x-attempts kept (2) that one failure would park it again at once.
    calls_before = len(doomed.calls)
    doomed.always_fail = False
    doomed.fail_times = calls_before + 1
    out = await parked(settings, capsys, "replay", "doomed")
    assert out.strip() == f"replayed 1 from {dead}"
    await eventually(lambda: len(doomed.events) == 1)
    assert len(doomed.calls) == calls_before + 2  # attempt 1 failed, attempt 2 succeeded
    assert doomed.events[0].job_id == "a3c193f288b2c11eeb60f39de2f86f409"
    envelope = doomed.events[0].envelope
    assert envelope is not None
    assert envelope.raw_body == (SEEDS / "ocr.1.xml").read_bytes()  # byte for byte
    assert await broker.count(dead) == 0


async def test_replay_of_unparsed_goes_back_through_the_router_with_its_properties(
    parked_world: ParkedWorld,
    capsys: pytest.CaptureFixture[str],
    broker: BrokerClient,
) -> None:
    settings, t = parked_world.settings, broker.topology
    shown = await parked(settings, capsys, "show", "unparsed")
    [before] = [json.loads(line) for line in shown.splitlines()]
    assert before["reason"] == "the body contains a NUL character"

    # With the router stopped, the replayed body waits on the raw queue: there it is, as the
    # ingress sent it (its properties kept, the parking headers gone).
    assert parked_world.system.router is not None
    await parked_world.system.router.stop()
    out = await parked(settings, capsys, "replay", "unparsed")
    assert out.strip() == f"replayed 1 from {t.unparsed}"
    assert await broker.count(t.unparsed) == 0
    on_raw = await broker.peek(t.raw)
    assert on_raw.body == GARBAGE
    assert on_raw.message_id == before["message_id"]
    raw_headers = on_raw.headers or {}
    assert raw_headers["x-source-address"] == "127.0.0.1"
    assert "x-parse-error" not in raw_headers
    assert "x-parse-location" not in raw_headers

    # A router takes it from there and parses it afresh: still garbage, so parked again.
    router = RouterService(settings)
    await router.start()
    try:
        await asyncio.wait_for(router.wait_started(), START_TIMEOUT)
        await eventually(lambda: broker.count_is(t.unparsed, 1))
    finally:
        await router.stop()
    assert await broker.count(t.raw) == 0
    [again] = await broker.take_all(t.unparsed)
    assert again.body == GARBAGE
    assert again.message_id == before["message_id"]
    headers = again.headers or {}
    assert headers["x-source-address"] == "127.0.0.1"
    assert headers["x-parse-error"] == "the body contains a NUL character"
    assert headers["x-parse-location"] == "line 1, column 1"


async def test_replay_of_unrouted_goes_to_the_events_exchange_only_what_the_filter_matches(
    parked_world: ParkedWorld,
    start_system: StartSystem,
    capsys: pytest.CaptureFixture[str],
    broker: BrokerClient,
) -> None:
    settings, t = parked_world.settings, broker.topology
    assert (await parked_world.system.post(MODERATION, "application/json")).status == 200
    await eventually(lambda: broker.count_is(t.unrouted, 2))
    out = await parked(settings, capsys, "show", "unrouted")
    shown = [json.loads(line) for line in out.splitlines()]
    assert sorted(s["routing_key"] for s in shown) == [
        "ReviewImage.Normal.Pass",
        "WorkflowFinish.w-1.Success",
    ]
    assert {s["reason"] for s in shown} == {"no consumer bound"}

    # A consumer for workflows is added; only the workflow event is replayed to it.
    workflows = Recorder("workflows", ["WorkflowFinish.#"])
    await start_system([workflows], ingress=False, router=False)
    only_workflows = ("--routing-key", "WorkflowFinish.*.Success")
    out = await parked(settings, capsys, "replay", "unrouted", *only_workflows, "--dry-run")
    assert out.strip() == f"would replay 1 from {t.unrouted}"
    out = await parked(settings, capsys, "replay", "unrouted", *only_workflows)
    assert out.strip() == f"replayed 1 from {t.unrouted}"
    await eventually(lambda: len(workflows.events) == 1)
    [event] = workflows.events
    assert event.routing_key == "WorkflowFinish.w-1.Success"
    assert event.envelope is not None
    assert event.envelope.raw_body == WORKFLOW
    [left] = await broker.take_all(t.unrouted)  # the moderation event, still unwanted
    assert (left.headers or {})["x-routing-key"] == "ReviewImage.Normal.Pass"
    assert len(workflows.events) == 1  # replayed once, not again


async def test_purge_asks_for_confirmation_and_deletes_only_with_it(
    parked_world: ParkedWorld,
    capsys: pytest.CaptureFixture[str],
    broker: BrokerClient,
) -> None:
    settings = parked_world.settings
    args = _build_parser().parse_args(
        [
            "parked",
            "purge",
            "unrouted",
            "--amqp-url",
            settings.broker_url,
            "--prefix",
            settings.prefix,
        ]
    )
    assert await _parked(args, _settings_from(args)) == 1  # no terminal, no --yes
    assert await broker.count(broker.topology.unrouted) == 1
    out = await parked(settings, capsys, "purge", "unrouted", "--yes")
    assert out.strip() == f"purged 1 from {broker.topology.unrouted}"
    assert await broker.count(broker.topology.unrouted) == 0


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _argv(settings: Settings, *argv: str) -> list[str]:
    return [
        "parked",
        *argv,
        *("--amqp-url", settings.broker_url, "--prefix", settings.prefix, "--no-entry-points"),
    ]


async def test_show_is_a_table_at_a_terminal_and_the_same_json_lines_when_piped(
    parked_world: ParkedWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = parked_world.settings
    wide = functools.partial(at_terminal, columns=160)
    shown = await asyncio.to_thread(wide, _argv(settings, "show", "doomed"))
    assert shown.status == 0
    [row] = [line for line in _plain(shown.out).splitlines() if JOB_ID in line]
    age, attempts, routing_key, job_id, *reason = row.split()
    assert re.fullmatch(r"\d+s", age)
    assert (attempts, routing_key, job_id) == ("2", "TaskFinish.ImageOCR.Success", JOB_ID)
    assert " ".join(reason) == "RuntimeError: doomed fails on purpose (call 2)"  # 1st line
    assert not any(line.startswith("{") for line in shown.out.splitlines())

    unparsed = _plain(
        (await asyncio.to_thread(at_terminal, _argv(settings, "show", "unparsed"))).out
    )
    [row] = [line for line in unparsed.splitlines() if "NUL character" in line]
    assert re.match(r"\s*\d+s\s+-\s+-\s+-\s+the body contains a NUL character", row)

    result = await asyncio.to_thread(piped, _argv(settings, "show", "doomed"))
    in_process = await parked(settings, capsys, "show", "doomed")
    assert result.status == 0
    # The JSON lines scripts have read since 0.1 (each look counts as a delivery, the rest is
    # the same byte for byte).
    assert _undelivered(result.out) == _undelivered(in_process)
    assert json.loads(result.out)["job_id"] == JOB_ID
    dead_at = json.loads(result.out)["headers"]["x-dead-at"]
    assert isinstance(dead_at, int)  # whole seconds since the epoch, as documented
    assert abs(dead_at - time.time()) < 30
    forced = ["show", "doomed", "--json"]
    at_a_terminal = await asyncio.to_thread(at_terminal, _argv(settings, *forced))
    assert _undelivered(at_a_terminal.out) == _undelivered(in_process)


def _undelivered(lines: str) -> str:
    return re.sub(r'"x-delivery-count": \d+', '"x-delivery-count": N', lines)


async def test_list_is_a_table_at_a_terminal_count_lines_when_piped_json_with_the_flag(
    parked_world: ParkedWorld, capsys: pytest.CaptureFixture[str], broker: BrokerClient
) -> None:
    settings = parked_world.settings
    broker.track(["log"], settings.retry_delays)  # listing declares log's dead queue
    p = settings.prefix
    argv = _argv(settings, "list", "--consumer", "log")
    shown = await asyncio.to_thread(at_terminal, argv)
    table = {
        line.split()[0]: line.split()[1:] for line in _plain(shown.out).splitlines() if p in line
    }
    assert table == {
        f"{p}.unparsed": ["1"],
        f"{p}.unrouted": ["1"],
        f"{p}.consumer.log.dead": ["0"],
    }

    result = await asyncio.to_thread(piped, argv)
    assert result.out.splitlines() == [
        f"         1  {p}.unparsed",
        f"         1  {p}.unrouted",
        f"         0  {p}.consumer.log.dead",
    ]
    lines = (await parked(settings, capsys, "list", "--consumer", "log", "--json")).splitlines()
    assert [json.loads(line) for line in lines] == [
        {"queue": f"{p}.unparsed", "parked": 1},
        {"queue": f"{p}.unrouted", "parked": 1},
        {"queue": f"{p}.consumer.log.dead", "parked": 0},
    ]


async def test_show_of_a_message_of_several_events_lists_them_and_a_job_filter_finds_any(
    settings: Settings, broker: BrokerClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Events that travelled together in one framed message, parked in unrouted as one."""
    ocr = (SEEDS / "ocr.1.xml").read_bytes()
    bodies = [ocr.replace(JOB_ID.encode(), f"job-{i}".encode()) for i in range(3)]
    received = datetime.now(UTC)
    events = [
        parse_callback(
            body, envelope=Envelope(request_id=f"r{i}", received_at=received, raw_body=body)
        )[0]
        for i, body in enumerate(bodies)
    ]
    message = events_message(events[0].routing_key, [encode(e) for e in events], events[0])
    exchange = await broker.topology.declare_events(broker.channel)  # as the router does
    await exchange.publish(message, routing_key=events[0].routing_key)
    await eventually(lambda: broker.count_is(broker.topology.unrouted, 1))

    out = await parked(settings, capsys, "show", "unrouted", "--body")
    [shown] = [json.loads(line) for line in out.splitlines()]
    assert shown["events"] == 3
    assert shown["job_id"] == "job-0"
    assert [e["job_id"] for e in shown["events_json"]] == ["job-0", "job-1", "job-2"]
    assert shown["body"] == bodies[0].decode()
    out = await parked(settings, capsys, "show", "unrouted", "--job-id", "job-2")
    assert [json.loads(line)["message_id"] for line in out.splitlines()] == [message.message_id]
    out = await parked(settings, capsys, "show", "unrouted", "--job-id", "job-9")
    assert out.strip() == ""
    assert await broker.count(broker.topology.unrouted) == 1  # showing removes nothing
