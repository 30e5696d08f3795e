"""`callback-fanout status`: one row per queue, problems flagged, an exit status a check can use."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from callback_fanout import status as status_module
from callback_fanout.cli import _build_parser, _settings_from, _status
from shared.settings import Settings
from tests.conftest import SEEDS, StartSystem
from tests.support.broker import BrokerClient
from tests.support.system import Recorder, RunningSystem
from tests.support.terminal import at_terminal, piped
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker

GARBAGE = b"\x00not a callback at all"
OCR = (SEEDS / "ocr.1.xml").read_bytes()


def status_argv(settings: Settings, *extra: str) -> list[str]:
    """`status` for the test's prefix, the `log` consumer (as its workers are configured)."""
    return [
        "status",
        *("--amqp-url", settings.broker_url, "--prefix", settings.prefix),
        *("--consumer", "log", "--no-entry-points"),
        *("--retry-delays", ",".join(str(d) for d in settings.retry_delays)),
        *("--management-url", "off", "--window", "0"),
        *extra,
    ]


async def status(settings: Settings, *extra: str) -> tuple[int, dict[str, Any]]:
    """Run `status` in this event loop, stdout a pipe; (exit status, the parsed document)."""
    args = _build_parser().parse_args(status_argv(settings, *extra))
    out = io.StringIO()
    code = await _status(args, _settings_from(args), out)
    [line] = out.getvalue().splitlines()
    return code, json.loads(line)


def rows(document: dict[str, Any]) -> list[tuple[object, ...]]:
    return [
        (q["queue"], q["ready"], q["consumers"], q["retrying"], q["parked"], q["problems"])
        for q in document["queues"]
    ]


async def consumers_on(broker: BrokerClient, queue: str, n: int) -> bool:
    channel = await broker.connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.consumer_count == n
    finally:
        await channel.close()


@pytest.fixture
async def healthy(start_system: StartSystem, broker: BrokerClient) -> RunningSystem:
    """Ingress, router and a worker running `log`, each with its admin port; one callback went
    all the way through."""
    log = Recorder("log", ["#"])
    system = await start_system([log], admin=True)
    assert (await system.post(OCR)).status == 200
    await eventually(lambda: len(log.events) == 1)
    return system


async def test_a_healthy_system_is_one_row_per_queue_and_exit_0(healthy: RunningSystem) -> None:
    p = healthy.settings.prefix
    code, document = await status(healthy.settings)
    assert rows(document) == [
        (f"{p}.raw", 0, 1, None, None, []),
        (f"{p}.consumer.log", 0, 1, 0, 0, []),
        (f"{p}.unparsed", 0, 0, None, 0, []),
        (f"{p}.unrouted", 0, 0, None, 0, []),
    ]
    assert code == 0
    assert document["healthy"] is True
    assert document["problems"] == []
    # AMQP alone cannot tell unacknowledged messages or in/out rates: said, not guessed.
    assert {q["unacked"] for q in document["queues"]} == {None}
    assert document["management_api"] is None
    assert "management_url is off" in document["notes"][0]


async def test_a_parked_body_and_a_dead_event_make_exit_1_and_are_named(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    log = Recorder("log", ["TaskFinish.#"], always_fail=True, max_attempts=2)
    system = await start_system([log])
    for body in (GARBAGE, OCR):
        assert (await system.post(body)).status == 200
    t = broker.topology
    dead = t.consumer("log", system.settings.retry_delays).dead
    await eventually(functools.partial(broker.count_is, t.unparsed, 1))
    await eventually(functools.partial(broker.count_is, dead, 1))

    code, document = await status(system.settings)
    p = system.settings.prefix
    assert rows(document) == [
        (f"{p}.raw", 0, 1, None, None, []),
        (f"{p}.consumer.log", 0, 1, 0, 1, ["1 parked"]),
        (f"{p}.unparsed", 1, 0, None, 1, ["1 parked"]),
        (f"{p}.unrouted", 0, 0, None, 0, []),
    ]
    assert code == 1
    assert document["problems"] == [f"{p}.consumer.log: 1 parked", f"{p}.unparsed: 1 parked"]


async def test_a_consumer_queue_without_consumer_is_flagged_and_exit_1(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    system = await start_system([Recorder("log", ["#"])])
    assert system.worker is not None
    await system.worker.stop()  # the worker is gone; its queue stays
    main = broker.topology.consumer("log", system.settings.retry_delays).main
    await eventually(functools.partial(consumers_on, broker, main, 0))

    code, document = await status(system.settings)
    p = system.settings.prefix
    assert rows(document) == [
        (f"{p}.raw", 0, 1, None, None, []),
        (f"{p}.consumer.log", 0, 0, 0, 0, ["no consumer"]),
        (f"{p}.unparsed", 0, 0, None, 0, []),
        (f"{p}.unrouted", 0, 0, None, 0, []),
    ]
    assert code == 1
    assert document["problems"] == [f"{p}.consumer.log: no consumer"]


async def test_a_consumer_no_worker_ever_started_is_missing_and_nothing_is_created(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    system = await start_system(worker=False)
    code, document = await status(system.settings)
    p = system.settings.prefix
    assert rows(document)[1] == (f"{p}.consumer.log", None, None, 0, 0, ["missing"])
    assert document["queues"][1]["exists"] is False
    assert code == 1
    channel = await broker.connection.channel()
    with pytest.raises(Exception, match="NOT_FOUND"):
        await channel.declare_queue(f"{p}.consumer.log", passive=True)


async def test_a_backlog_shows_as_ready_and_its_change_per_second(
    start_system: StartSystem, broker: BrokerClient
) -> None:
    system = await start_system([Recorder("log", ["#"])], router=False)
    for _ in range(3):
        assert (await system.post(OCR)).status == 200
    await eventually(functools.partial(broker.count_is, broker.topology.raw, 3))
    code, document = await status(system.settings, "--window", "0.3")
    raw = document["queues"][0]
    assert (raw["ready"], raw["consumers"], raw["problems"]) == (3, 0, ["no router"])
    assert raw["ready_change_per_s"] == 0.0  # nothing moved during the window
    assert document["window_seconds"] >= 0.3
    assert code == 1


async def test_traffic_during_the_window_shows_as_a_positive_change_per_second(
    start_system: StartSystem, broker: BrokerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = await start_system([Recorder("log", ["#"])], router=False)
    for _ in range(3):
        assert (await system.post(OCR)).status == 200
    await eventually(functools.partial(broker.count_is, broker.topology.raw, 3))

    first_reading_taken = asyncio.Event()
    take = status_module._snapshot

    async def noting_the_first(*args: Any, **kwargs: Any) -> Any:
        reading = await take(*args, **kwargs)
        first_reading_taken.set()
        return reading

    monkeypatch.setattr(status_module, "_snapshot", noting_the_first)
    running = asyncio.create_task(status(system.settings, "--window", "1.5"))
    await first_reading_taken.wait()
    for _ in range(6):  # one after the other: one message each (no group commit)
        assert (await system.post(OCR)).status == 200
    _, document = await running
    raw = document["queues"][0]
    assert raw["ready"] == 9
    seconds = document["window_seconds"]
    assert seconds >= 1.5
    assert raw["ready_change_per_s"] == pytest.approx(6 / seconds, abs=0.1)
    assert raw["ready_change_per_s"] > 0


async def test_events_waiting_in_a_delay_queue_are_counted_as_retrying(
    settings: Settings, start_system: StartSystem, broker: BrokerClient
) -> None:
    slow_retry = settings.model_copy(update={"retry_delays": [60.0]})
    log = Recorder("log", ["#"], fail_times=2)  # both events wait a minute for attempt 2
    system = await start_system([log], settings_=slow_retry)
    for _ in range(2):
        assert (await system.post(OCR)).status == 200
    [(_, delay)] = broker.topology.consumer("log", [60.0]).delays
    await eventually(functools.partial(broker.count_is, delay, 2))

    code, document = await status(slow_retry)
    p = settings.prefix
    assert rows(document)[1] == (f"{p}.consumer.log", 0, 1, 2, 0, [])
    assert code == 0  # retrying is work in progress, not a problem


async def test_each_role_readyz_is_included_and_one_not_ready_makes_exit_1(
    healthy: RunningSystem,
) -> None:
    ingress = healthy.admin_url("ingress", "")
    code, document = await status(healthy.settings, "--url", ingress)
    assert code == 0
    [role] = document["roles"]
    assert (role["url"], role["ready"], role["status"]) == (f"{ingress}/readyz", True, 200)
    assert role["detail"]["roles"]["ingress"]["broker"] is True  # the admin port's document

    code, document = await status(healthy.settings, "--url", ingress, "--url", "http://127.0.0.1:9")
    assert code == 1
    assert [(r["ready"], r["status"], r["detail"]) for r in document["roles"]][1] == (
        False,
        None,
        "no answer: cannot connect",
    )
    assert document["problems"] == ["http://127.0.0.1:9/readyz: not ready"]


async def test_a_terminal_gets_a_table_and_a_pipe_gets_json(
    healthy: RunningSystem, broker: BrokerClient
) -> None:
    argv = status_argv(healthy.settings)
    assert (await healthy.post(GARBAGE)).status == 200
    unparsed = broker.topology.unparsed
    await eventually(functools.partial(broker.count_is, unparsed, 1))

    shown = await asyncio.to_thread(at_terminal, argv)
    assert shown.status == 1
    assert "\x1b[" in shown.out  # coloured: the parked row is highlighted
    plain = re.sub(r"\x1b\[[0-9;]*m", "", shown.out)
    assert f"prefix {healthy.settings.prefix}" in plain
    assert "NOT HEALTHY" in plain
    table = {line.split()[0]: line.split()[1:] for line in plain.splitlines() if line.strip()}
    #                 ready unacked consumers retrying parked in/s out/s Δ/s state
    assert table["raw"] == ["0", "-", "1", "-", "-", "-", "-", "-", "ok"]
    assert table["consumer.log"] == ["0", "-", "1", "0", "0", "-", "-", "-", "ok"]
    assert table["unparsed"] == ["1", "-", "0", "-", "1", "-", "-", "-", "1", "PARKED"]
    assert table["unrouted"] == ["0", "-", "0", "-", "0", "-", "-", "-", "ok"]

    result = await asyncio.to_thread(piped, argv)
    assert result.status == 1
    document = json.loads(result.out)
    assert document["healthy"] is False
    assert [q["queue"] for q in document["queues"]][2] == unparsed


async def test_json_flag_gives_json_at_a_terminal_too(healthy: RunningSystem) -> None:
    shown = await asyncio.to_thread(at_terminal, status_argv(healthy.settings, "--json"))
    assert shown.status == 0
    assert json.loads(shown.out)["healthy"] is True


async def test_watch_prints_one_document_per_refresh(healthy: RunningSystem) -> None:
    args = _build_parser().parse_args(status_argv(healthy.settings, "--watch", "0.2"))
    out = io.StringIO()
    task = asyncio.create_task(_status(args, _settings_from(args), out))
    await eventually(lambda: len(out.getvalue().splitlines()) >= 3)
    task.cancel()  # what Ctrl-C does
    assert await task == 0  # the last verdict
    documents = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(d["healthy"] for d in documents)


def test_bad_status_arguments_are_refused_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _build_parser().parse_args(["status", "--window", "-1"])
    assert exited.value.code == 2
    assert "seconds must be 0 or more" in capsys.readouterr().err


def test_a_url_that_is_not_an_admin_port_url_exits_2_with_one_line() -> None:
    result = piped(["status", "--url", "127.0.0.1:9100", "--management-url", "off"])
    assert result.status == 2
    assert result.out == ""
    assert result.err.strip() == (
        "callback-fanout: --url '127.0.0.1:9100': expected an admin port URL like "
        "http://127.0.0.1:9100"
    )


def test_status_exits_1_with_one_line_when_the_broker_is_away() -> None:
    result = piped(["status", "--amqp-url", "amqp://fanout:s3cret-pw@127.0.0.1:1/"])
    assert result.status == 1
    assert result.out == ""
    assert result.err.startswith("callback-fanout: cannot reach the broker at amqp://fanout:***@")
    assert "s3cret-pw" not in result.err
    assert len(result.err.strip().splitlines()) == 1


async def test_consumers_of_the_configuration_file_have_their_rows(
    settings: Settings, tmp_path: Path
) -> None:
    config = tmp_path / "fanout.toml"
    config.write_text(
        '[consumers.failures]\nuse = "log"\nroutes = ["TaskFinish.*.Failed"]\n'
        "retry_delays = [0.2]\n"
    )
    code, document = await status(settings, "--config", str(config))
    p = settings.prefix
    assert [q["queue"] for q in document["queues"]] == [
        f"{p}.raw",
        f"{p}.consumer.failures",
        f"{p}.consumer.log",
        f"{p}.unparsed",
        f"{p}.unrouted",
    ]
    assert document["queues"][1]["problems"] == ["missing"]  # no worker ever ran it
    assert code == 1
