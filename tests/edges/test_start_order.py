"""Start order never parks: `run` routes a backlog only once its consumers' queues are bound,
and `declare` makes the whole topology ahead of any role, as often as it is run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aio_pika
import pytest

from callback_fanout.cli import main
from callback_fanout.commands.roles import services
from shared.settings import Settings
from tests.conftest import StartSystem
from tests.support.broker import BrokerClient
from tests.support.processes import free_port
from tests.support.start_order_consumers import HANDLED
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
OCR = (ROOT / "workers" / "testing" / "seeds" / "ocr.1.xml").read_bytes()
SAMPLE_JOB_ID = b"a3c193f288b2c11eeb60f39de2f86f409"
CONSUMERS = [
    "tests.support.start_order_consumers:Early",  # bound first, then a slow startup hook
    "tests.support.start_order_consumers:late",  # bound only after it: wants every event
]
BACKLOG = 30


def _callback(n: int) -> bytes:
    return OCR.replace(SAMPLE_JOB_ID, f"backlog-{n:04d}".encode())


async def test_run_started_on_a_backlog_routes_none_of_it_before_its_consumers_queues_are_bound(
    settings: Settings, broker: BrokerClient, start_system: StartSystem, tmp_path: Path
) -> None:
    broker.track(["early", "late"], settings.retry_delays)
    # An ingress takes callbacks while no router runs: they wait in the raw queue.
    ingress_alone = await start_system(router=False, worker=False)
    for n in range(BACKLOG):
        assert (await ingress_alone.post(_callback(n))).status == 200
    await ingress_alone.stop()
    assert await broker.count(broker.topology.raw) > 0
    HANDLED.clear()

    run = settings.model_copy(update={"consumers": CONSUMERS, "spool_dir": tmp_path / "spool"})
    started = services("run", run)
    assert [s.name for s in started] == ["worker", "router", "ingress"]
    try:
        for service in started:  # as `run` starts them: each returns at once
            await service.start()
        await eventually(lambda: len(HANDLED) == BACKLOG, timeout=30)
    finally:
        for service in reversed(started):
            await service.stop()
    assert sorted(HANDLED) == [f"backlog-{n:04d}" for n in range(BACKLOG)]
    assert await broker.count(broker.topology.unrouted) == 0
    assert await broker.count(broker.topology.raw) == 0


def _declare_argv(settings: Settings, *extra: str) -> list[str]:
    return [
        "declare",
        *("--amqp-url", settings.broker_urls[0], "--prefix", settings.prefix),
        *("--retry-delays", ",".join(str(d) for d in settings.retry_delays)),
        "--no-entry-points",
        *(f"--consumer={ref}" for ref in CONSUMERS),
        *extra,
    ]


async def test_declare_run_twice_exits_0_both_times_with_every_consumer_queue_bound(
    settings: Settings, broker: BrokerClient, capsys: pytest.CaptureFixture[str]
) -> None:
    broker.track(["early", "late"], settings.retry_delays)
    topology = broker.topology
    late = topology.consumer("late", settings.retry_delays)
    early = topology.consumer("early", settings.retry_delays)

    assert await asyncio.to_thread(main, _declare_argv(settings)) == 0
    first = capsys.readouterr().out.splitlines()
    assert await asyncio.to_thread(main, _declare_argv(settings)) == 0  # already there
    assert capsys.readouterr().out.splitlines() == first
    expected = [topology.unparsed, topology.raw, topology.unrouted]
    for queues in (early, late):
        expected += [queues.dead, queues.main, *(name for _, name in queues.delays)]
    assert [line.split()[0] for line in first] == expected
    assert f"{late.main}  <- #" in first

    # Every queue is there and empty; an event published now lands in its consumer's queue.
    for queue in expected:
        assert await broker.count(queue) == 0, queue
    events = await broker.channel.get_exchange(topology.events)
    for key in ("TaskFinish.ImageOCR.Success", "Nothing.Is.Routed.Here"):
        await events.publish(aio_pika.Message(b"{}"), routing_key=key)
    assert await broker.count(late.main) == 2
    assert await broker.count(early.main) == 1
    assert await broker.count(topology.unrouted) == 0


async def test_declare_with_no_broker_answering_exits_1_with_one_line(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _declare_argv(settings)
    argv[argv.index("--amqp-url") + 1] = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    assert await asyncio.to_thread(main, argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("callback-fanout: ")
    assert len(captured.err.splitlines()) == 1


def test_declare_offers_the_consumers_settings_a_worker_has_and_no_role_setting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exited:
        main(["declare", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--consumer", "--entry-points", "--retry-delays", "--prefix", "--amqp-url"):
        assert f"  {flag}" in text, flag
    for flag in ("--port", "--router-prefetch", "--concurrency", "--spool-dir"):
        assert f"  {flag} " not in text, flag


async def test_declare_exits_1_when_a_queue_exists_with_other_arguments(
    settings: Settings, broker: BrokerClient, capsys: pytest.CaptureFixture[str]
) -> None:
    await broker.channel.declare_queue(broker.topology.raw, durable=True)  # a classic queue
    assert await asyncio.to_thread(main, _declare_argv(settings)) == 1
    error = capsys.readouterr().err
    assert error.startswith("callback-fanout: declare failed: ")
    assert "PRECONDITION_FAILED" in error
