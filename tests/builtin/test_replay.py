"""`replay`: archived events of a time window re-delivered to one consumer's queue, exactly
once across an interrupt, past the consumer's dedupe; `parked replay --rate` at its pace."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aio_pika.abc import AbstractMessage

from callback_fanout.cli import _build_parser, _settings_from
from callback_fanout.commands.replay import parse_time, run_replay
from shared.callbacks import CallbackEvent
from shared.callbacks.events import Envelope
from shared.callbacks.parser import parse_callback
from shared.errors import ConfigError, FanoutError
from shared.settings import Settings
from shared.wire.events import entries_of, event_message
from shared.wire.headers import IDEMPOTENCY_KEY, REPLAY
from tests.builtin.conftest import StartWith
from tests.conftest import SEEDS
from tests.support.broker import BrokerClient
from tests.support.metrics import scrape
from tests.support.parked_command import parked
from tests.support.system import Recorder, RunningSystem
from tests.support.waiting import eventually
from workers.builtin import archive

pytestmark = pytest.mark.broker

OCR = (SEEDS / "ocr.1.xml").read_bytes()  # TaskFinish.ImageOCR.Success
PIC = (SEEDS / "pic-process.1.xml").read_bytes()  # TaskFinish.PicProcess.Success
OCR_JOB = "a3c193f288b2c11eeb60f39de2f86f409"
PIC_JOB = "c93984788066911ed89ed352d4d9d2084"
#: The window the tests replay: 10:00 to 14:00 on a day.
SINCE = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
UNTIL = datetime(2026, 12, 5, 14, 0, tzinfo=UTC)
WINDOW = ("--since", "2026-12-05T10:00", "--until", "2026-12-05T14:00:00+00:00")
ROUTES = ("TaskFinish.#",)


def made_event(n: int, received_at: datetime, body: bytes = OCR) -> CallbackEvent:
    """The event of a callback received at ``received_at``; ``n`` makes its job id its own."""
    job = OCR_JOB if body is OCR else PIC_JOB
    raw = body.replace(job.encode(), f"{job[:-4]}{n:04d}".encode())
    envelope = Envelope(
        request_id=f"req-{n}",
        received_at=received_at,
        content_type="application/xml",
        raw_body=raw,
    )
    [event] = parse_callback(raw, envelope=envelope)
    return event


async def archived(pg: asyncpg.Connection, table: str, events: list[CallbackEvent]) -> None:
    """The events as the ``archive`` built-in stores them (its own statements)."""
    for statement in archive.create_table_sql(table):
        await pg.execute(statement)
    rows = [archive.Row.of(event, raw_body=True) for event in events]
    names = [f.name for f in dataclasses.fields(archive.Row)]
    await pg.execute(archive.insert_sql(table), *[[getattr(r, n) for r in rows] for n in names])


@pytest.fixture
def common(settings: Settings, pg_dsn: str, table: str, tmp_path: Path) -> list[str]:
    """What every replay of a test says: its broker, prefix, archive and checkpoints."""
    return [
        "--amqp-url",
        settings.broker_url,
        "--prefix",
        settings.prefix,
        "--archive-dsn",
        pg_dsn,
        "--archive-table",
        table,
        "--checkpoints",
        str(tmp_path / "checkpoints"),
    ]


Replay = Callable[..., Awaitable[tuple[int, str]]]


@pytest.fixture
def run(common: list[str]) -> Replay:
    """``await run("--consumer", NAME, ...)``: `callback-fanout replay`, its status and output."""

    async def replaying(*argv: str) -> tuple[int, str]:
        args = _build_parser().parse_args(["replay", *common, *argv])
        out = io.StringIO()
        status = await run_replay(args, _settings_from(args), out)
        return status, out.getvalue()

    return replaying


async def declared(broker: BrokerClient, *names: str) -> list[str]:
    """Each consumer's queue, bound as a worker binds it (every TaskFinish event)."""
    broker.track(names, [1.0])
    queues = []
    for name in names:
        queues.append(broker.topology.consumer(name, [1.0]))
        await broker.topology.declare_consumer(broker.channel, queues[-1], ROUTES)
    return [q.main for q in queues]


def keys_of(messages: Sequence[AbstractMessage]) -> list[str]:
    return [str(m.headers[IDEMPOTENCY_KEY]) for m in messages]


async def test_a_window_goes_to_one_consumer_exactly_as_archived_and_marked_as_a_replay(
    broker: BrokerClient, pg: asyncpg.Connection, table: str, run: Replay
) -> None:
    target, other = await declared(broker, "target", "other")
    times = [SINCE - timedelta(seconds=1), SINCE, SINCE + timedelta(hours=2)]
    times += [UNTIL - timedelta(seconds=1), UNTIL, UNTIL + timedelta(hours=1)]
    events = [made_event(n, at) for n, at in enumerate(times)]
    await archived(pg, table, events)

    status, out = await run("--consumer", "target", *WINDOW, "--yes")

    assert status == 0, out
    assert out.splitlines()[0] == f"replaying 3 events to {target} (3 in the window)"
    assert out.splitlines()[-1] == f"replayed 3 events to {target}"
    received = await broker.take_all(target)
    assert keys_of(received) == [e.idempotency_key for e in events[1:4]]  # in archive order
    assert await broker.count(other) == 0  # bound to the same keys, sent nothing
    for message, original in zip(received, events[1:4], strict=True):
        assert message.headers[REPLAY]
        [entry] = entries_of(message.content_type, message.body)
        assert entry.event() == original  # the raw body and the envelope included


async def test_the_routing_key_and_job_filters_choose_what_is_counted_and_sent(
    broker: BrokerClient, pg: asyncpg.Connection, table: str, run: Replay
) -> None:
    [target] = await declared(broker, "target")
    inside = SINCE + timedelta(minutes=5)
    ocr = [made_event(n, inside) for n in range(3)]
    pic = [made_event(n, inside, PIC) for n in range(10, 12)]
    await archived(pg, table, [ocr[0], pic[0], ocr[1], pic[1], ocr[2]])

    _, counted = await run("--consumer", "target", *WINDOW, "--dry-run")
    assert counted.startswith("would replay 5 events")
    _, counted = await run("--consumer", "target", *WINDOW, "--dry-run", "--job-id", ocr[1].job_id)
    assert counted.startswith("would replay 1 events")
    status, out = await run(
        "--consumer", "target", *WINDOW, "--routing-key", "TaskFinish.PicProcess.*", "--yes"
    )

    assert status == 0, out
    assert keys_of(await broker.take_all(target)) == [e.idempotency_key for e in pic]


async def test_a_dry_run_prints_the_count_and_the_first_rows_and_sends_nothing(
    broker: BrokerClient, pg: asyncpg.Connection, table: str, run: Replay
) -> None:
    [target] = await declared(broker, "target")
    events = [made_event(n, SINCE + timedelta(seconds=n)) for n in range(12)]
    await archived(pg, table, events)

    status, out = await run("--consumer", "target", *WINDOW, "--dry-run")

    assert status == 0
    lines = out.splitlines()
    assert lines[0] == f"would replay 12 events to {target} (12 in the window)"
    assert lines[1].startswith(f"  archive  {table} at postgresql://")
    assert lines[2] == (
        "  window   received 2026-12-05T10:00:00+00:00 to 2026-12-05T14:00:00+00:00"
    )
    first = [json.loads(line) for line in lines[3:]]  # piped: JSON lines
    assert [row["job_id"] for row in first] == [e.job_id for e in events[:10]]
    assert first[0] == {
        "id": 1,
        "received_at": "2026-12-05T10:00:00+00:00",
        "routing_key": "TaskFinish.ImageOCR.Success",
        "job_id": events[0].job_id,
        "request_id": "req-0",
        "idempotency_key": events[0].idempotency_key,
    }
    assert await broker.count(target) == 0


async def test_without_yes_and_without_a_terminal_it_refuses_and_sends_nothing(
    broker: BrokerClient,
    pg: asyncpg.Connection,
    table: str,
    run: Replay,
    capsys: pytest.CaptureFixture[str],
) -> None:
    [target] = await declared(broker, "target")
    await archived(pg, table, [made_event(1, SINCE)])
    assert not sys.stdin.isatty()

    status, _ = await run("--consumer", "target", *WINDOW)

    assert status == 1
    assert "refusing to replay without --yes (no terminal to ask)" in capsys.readouterr().err
    assert await broker.count(target) == 0


async def test_an_archive_that_cannot_be_read_is_one_clear_error(
    broker: BrokerClient, run: Replay, capsys: pytest.CaptureFixture[str]
) -> None:
    await declared(broker, "target")
    with pytest.raises(ConfigError, match=r"archive table 'Bad-Name': .*lowercase"):
        await run("--consumer", "target", *WINDOW, "--archive-table", "Bad-Name")
    with pytest.raises(FanoutError, match=r'cannot read the archive .*relation "nowhere"'):
        await run("--consumer", "target", *WINDOW, "--archive-table", "nowhere", "--dry-run")


async def test_a_consumer_without_a_queue_is_one_clear_error(
    broker: BrokerClient, pg: asyncpg.Connection, table: str, run: Replay
) -> None:
    await archived(pg, table, [made_event(1, SINCE)])
    with pytest.raises(ConfigError, match=r"no queue .*\.consumer\.nobody: consumer 'nobody'"):
        await run("--consumer", "nobody", *WINDOW, "--yes")


async def test_interrupted_then_run_again_it_sends_each_event_exactly_once(
    broker: BrokerClient, pg: asyncpg.Connection, table: str, common: list[str], run: Replay
) -> None:
    [target] = await declared(broker, "target")
    events = [made_event(n, SINCE + timedelta(seconds=n)) for n in range(20)]
    await archived(pg, table, events)
    command = ["replay", "--consumer", "target", *WINDOW, "--yes", "--rate", "10"]
    argv = [*command, *common]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callback_fanout",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CALLBACK_FANOUT_LOG_JSON": "false"},
    )
    await eventually(lambda: _at_least(broker, target, 3), timeout=30, interval=0.05)
    process.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    first_run = await broker.count(target)

    assert process.returncode == 130, err.decode()
    assert 3 <= first_run < 20
    stopped = out.decode().splitlines()[-1]
    assert stopped.startswith(f"stopped after {first_run} of 20 events to {target}")

    status, again = await run("--consumer", "target", *WINDOW, "--yes")

    assert status == 0, again
    assert again.splitlines()[0] == (
        f"replaying {20 - first_run} events to {target} "
        f"(20 in the window, {first_run} sent by an earlier run of this command)"
    )
    received = keys_of(await broker.take_all(target))
    assert received == [e.idempotency_key for e in events]  # each once, in order
    status, third = await run("--consumer", "target", *WINDOW, "--yes")
    assert status == 0
    assert "nothing left to replay (--restart sends the window again)" in third
    assert await broker.count(target) == 0


async def _at_least(broker: BrokerClient, queue: str, n: int) -> bool:
    return await broker.count(queue) >= n


async def test_replayed_events_pass_the_consumers_dedupe_and_other_copies_do_not(
    start_with: StartWith, broker: BrokerClient, pg: asyncpg.Connection, table: str, run: Replay
) -> None:
    recorder = Recorder("deduped", ROUTES, dedupe=True)
    system = await start_with([recorder.loaded()], admin=True)
    assert (await system.post(OCR)).status == 200
    await eventually(lambda: len(recorder.events) == 1)
    [event] = recorder.events
    queue = broker.topology.consumer("deduped", [1.0]).main
    await broker.channel.default_exchange.publish(event_message(event), routing_key=queue)
    await eventually(lambda: _outcomes(system, "duplicate", 1), timeout=10)
    assert event.envelope is not None
    await archived(pg, table, [event])
    window = ("--since", (event.envelope.received_at - timedelta(minutes=1)).isoformat())

    status, out = await run("--consumer", "deduped", *window, "--yes")

    assert status == 0, out
    await eventually(lambda: len(recorder.events) == 2)
    assert recorder.events[1] == event  # the same event, handled again on purpose
    assert await _outcomes(system, "handled", 2)
    assert await _outcomes(system, "duplicate", 1)


async def _outcomes(system: RunningSystem, outcome: str, count: int) -> bool:
    """The worker's /metrics counts ``count`` events of ``deduped`` with ``outcome``."""
    scraped = await scrape(system.http, system.admin_url("worker"))
    name = "callback_fanout_consumer_events_total"
    return scraped.series(name).get(
        frozenset({("consumer", "deduped"), ("outcome", outcome)})
    ) == float(count)


async def test_parked_replay_at_a_rate_keeps_that_pace(
    settings: Settings, broker: BrokerClient, capsys: pytest.CaptureFixture[str]
) -> None:
    broker.track(["paced"], [1.0])
    queues = broker.topology.consumer("paced", [1.0])
    await broker.topology.declare_consumer(broker.channel, queues, ROUTES)
    for n in range(10):
        message = event_message(made_event(n, SINCE))
        await broker.channel.default_exchange.publish(message, routing_key=queues.dead)
    await eventually(lambda: broker.count_is(queues.dead, 10))

    started = time.monotonic()
    out = await parked(settings, capsys, "replay", "paced", "--rate", "20")
    took = time.monotonic() - started

    assert out.strip() == f"replayed 10 from {queues.dead}"
    assert 0.45 <= took < 5.0  # the 10th sent 9/20 s after the first
    assert await broker.count(queues.main) == 10
    assert await broker.count(queues.dead) == 0


def test_a_time_is_iso_8601_utc_without_an_offset_or_a_duration_ago() -> None:
    now = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
    assert parse_time("2026-12-05T10:00", now) == SINCE
    assert parse_time("2026-12-05 18:00+08:00", now) == SINCE
    assert parse_time("2h", now) == now - timedelta(hours=2)
    assert parse_time("90m", now) == now - timedelta(minutes=90)
    assert parse_time("1d", now) == now - timedelta(days=1)
    with pytest.raises(ConfigError, match="'yesterday' is not a time"):
        parse_time("yesterday", now)


async def test_the_archive_is_the_configuration_files_archive_consumer_by_default(
    broker: BrokerClient, pg: asyncpg.Connection, pg_dsn: str, table: str, tmp_path: Path
) -> None:
    [target] = await declared(broker, "target")
    await archived(pg, table, [made_event(1, SINCE), made_event(2, SINCE)])
    (tmp_path / "dsn.txt").write_text(pg_dsn)
    config = tmp_path / "callback-fanout.toml"
    config.write_text(
        f'[consumers.store]\nuse = "archive"\nroutes = ["#"]\n'
        f'dsn = {{ file = "dsn.txt" }}\ntable = "{table}"\n\n'
        '[consumers.audit]\nuse = "log"\nroutes = ["#"]\n'
    )
    argv = ["replay", "--consumer", "target", *WINDOW, "--dry-run", "--config", str(config)]
    argv += ["--amqp-url", broker.url, "--prefix", broker.topology.prefix]
    args = _build_parser().parse_args(argv)
    out = io.StringIO()

    assert await run_replay(args, _settings_from(args), out) == 0

    assert out.getvalue().splitlines()[:2] == [
        f"would replay 2 events to {target} (2 in the window)",
        f"  archive  {table} at {pg_dsn}",
    ]
