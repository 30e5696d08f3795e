"""Operating the parking queues with `callback-fanout parked`, against the real broker."""

from __future__ import annotations

import functools
import json

import pytest

from callback_fanout.cli import _build_parser, _parked, _settings_from
from shared.settings import Settings
from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.system import Recorder
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

GARBAGE = b"\x00not a callback at all"
WORKFLOW = (
    b"<Response><EventName>WorkflowFinish</EventName><WorkflowExecution><RunId>r-1</RunId>"
    b"<WorkflowId>w-1</WorkflowId><State>Success</State></WorkflowExecution></Response>"
)


async def parked(settings: Settings, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run `callback-fanout parked ...` in this event loop and return what it printed."""
    capsys.readouterr()
    args = _build_parser().parse_args(
        [
            "parked",
            *argv,
            "--amqp-url",
            settings.broker_url,
            "--prefix",
            settings.prefix,
            "--no-entry-points",
        ]
    )
    assert await _parked(args, _settings_from(args)) == 0
    return capsys.readouterr().out


@pytest.fixture
async def parked_world(
    start_system: StartSystem, broker: BrokerClient
) -> tuple[Recorder, Settings]:
    """One message in each parking queue: unparsed, unrouted, and doomed's dead queue."""
    doomed = Recorder("doomed", ["TaskFinish.ImageOCR.*"], always_fail=True, max_attempts=2)
    system = await start_system([doomed])
    for body in (GARBAGE, WORKFLOW, (SEEDS / "ocr.1.xml").read_bytes()):
        assert (await system.post(body)).status == 200
    t = broker.topology
    dead = t.consumer("doomed", system.settings.retry_delays).dead
    for queue in (t.unparsed, t.unrouted, dead):
        await eventually(functools.partial(broker.count_is, queue, 1))
    return doomed, system.settings


async def test_list_counts_every_parking_queue(
    parked_world: tuple[Recorder, Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    _, settings = parked_world
    out = await parked(settings, capsys, "list", "--consumer", "log")
    counts = {line.split()[1]: int(line.split()[0]) for line in out.splitlines()}
    assert counts == {
        f"{settings.prefix}.unparsed": 1,
        f"{settings.prefix}.unrouted": 1,
        f"{settings.prefix}.consumer.log.dead": 0,
    }


async def test_show_prints_reason_attempts_and_body_without_removing_anything(
    parked_world: tuple[Recorder, Settings],
    capsys: pytest.CaptureFixture[str],
    broker: BrokerClient,
) -> None:
    _, settings = parked_world
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
    parked_world: tuple[Recorder, Settings],
    capsys: pytest.CaptureFixture[str],
    broker: BrokerClient,
) -> None:
    doomed, settings = parked_world
    dead = broker.topology.consumer("doomed", settings.retry_delays).dead
    out = await parked(settings, capsys, "replay", "doomed", "--dry-run")
    assert out.strip() == f"would replay 1 from {dead}"
    assert await broker.count(dead) == 1

    doomed.always_fail = False  # the consumer's bug is fixed
    calls_before = len(doomed.calls)
    out = await parked(settings, capsys, "replay", "doomed")
    assert out.strip() == f"replayed 1 from {dead}"
    await eventually(lambda: len(doomed.events) == 1)
    assert len(doomed.calls) == calls_before + 1  # first attempt again, not attempt 3
    assert doomed.events[0].job_id == "a3c193f288b2c11eeb60f39de2f86f409"
    assert await broker.count(dead) == 0


async def test_replay_of_unparsed_goes_back_through_the_router_with_its_properties(
    parked_world: tuple[Recorder, Settings],
    capsys: pytest.CaptureFixture[str],
    broker: BrokerClient,
) -> None:
    _, settings = parked_world
    unparsed = broker.topology.unparsed
    shown = await parked(settings, capsys, "show", "unparsed")
    [before] = [json.loads(line) for line in shown.splitlines()]
    await parked(settings, capsys, "replay", "unparsed")
    # The router parses it again; it is still garbage, so it is parked again, unchanged.
    await eventually(lambda: broker.count_is(unparsed, 1))
    [again] = await broker.take_all(unparsed)
    assert again.body == GARBAGE
    assert again.message_id == before["message_id"]
    assert (again.headers or {}).get("x-source-address") == "127.0.0.1"


async def test_purge_asks_for_confirmation_and_deletes_only_with_it(
    parked_world: tuple[Recorder, Settings],
    capsys: pytest.CaptureFixture[str],
    broker: BrokerClient,
) -> None:
    _, settings = parked_world
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
