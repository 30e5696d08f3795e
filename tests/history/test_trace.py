"""`callback-fanout trace`: a job's whole story, from the history, the archive and the parking
queues, against the real broker and PostgreSQL."""

from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic import SecretStr

from callback_fanout.cli import _build_parser, _settings_from
from callback_fanout.commands.trace import run_trace
from callback_fanout.tracing import ArchiveSource, ConsumerRoutes, Trace, trace
from shared.history import COLUMNS, TABLE, create_table_sql
from shared.settings import Settings
from tests.conftest import SEEDS, StartSystem
from tests.history.conftest import StartWith
from tests.support.broker import BrokerClient
from tests.support.system import Recorder, RunningSystem
from tests.support.traced_consumers import ROUTES
from tests.support.waiting import eventually
from workers.builtin.archive import Options, build
from workers.consumer import ConsumerSpec

pytestmark = pytest.mark.broker

JOB_ID = "a3c193f288b2c11eeb60f39de2f86f409"  # the job of ocr.1.xml
TRACED = "tests.support.traced_consumers"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"  # of a W3C traceparent


@dataclass
class Story:
    """The system after one OCR job: ``flaky`` failed twice then handled it, ``refuser``
    failed and then parked it."""

    system: RunningSystem
    flaky: Recorder
    refuser: Recorder

    @property
    def settings(self) -> Settings:
        return self.system.settings

    @property
    def consumers(self) -> list[ConsumerRoutes]:
        return [ConsumerRoutes(r.name, tuple(r.routes)) for r in (self.flaky, self.refuser)]


async def _told(start_system: StartSystem, broker: BrokerClient, settings: Settings) -> Story:
    flaky = Recorder("flaky", ROUTES, fail_times=2)  # max_attempts 3 (the settings')
    refuser = Recorder("refuser", ROUTES, always_fail=True, max_attempts=2)
    system = await start_system([flaky, refuser], settings_=settings)
    assert (await system.post((SEEDS / "ocr.1.xml").read_bytes())).status == 200
    dead = broker.topology.consumer("refuser", settings.retry_delays).dead
    await eventually(lambda: len(flaky.events) == 1)
    await eventually(functools.partial(broker.count_is, dead, 1))
    return Story(system, flaky, refuser)


@pytest.fixture
async def story(
    start_system: StartSystem, broker: BrokerClient, history_settings: Settings
) -> Story:
    told = await _told(start_system, broker, history_settings)
    worker = told.system.worker
    assert worker is not None
    assert worker.history is not None
    history = worker.history
    await eventually(lambda: history.written == 5)
    return told


async def _traced(story: Story, broker: BrokerClient, id: str, **kwargs: object) -> Trace:
    dsn = story.settings.history_dsn
    options: dict[str, object] = {
        "prefix": story.settings.prefix,
        "consumers": story.consumers,
        "history_dsn": dsn.get_secret_value() if dsn else None,
        "connection": broker.connection,
        "topology": broker.topology,
        **kwargs,
    }
    return await trace(id, **options)  # type: ignore[arg-type]


async def test_a_jobs_trace_lists_every_attempt_of_every_consumer_in_order(
    story: Story, broker: BrokerClient
) -> None:
    found = await _traced(story, broker, JOB_ID)
    [event] = found.events
    assert event.job_id == JOB_ID
    assert event.routing_key == "TaskFinish.ImageOCR.Success"
    assert event.received is not None
    assert event.received.source == "history"
    assert event.received.source_address == "127.0.0.1"
    assert event.received.request_id
    tries = [(a.consumer, a.attempt, a.outcome) for a in event.attempts]
    assert sorted(tries) == [
        ("flaky", 1, "retried"),
        ("flaky", 2, "retried"),
        ("flaky", 3, "handled"),
        ("refuser", 1, "retried"),
        ("refuser", 2, "parked"),
    ]
    for consumer in ("flaky", "refuser"):  # each consumer's attempts in the order they ran
        mine = [a.attempt for a in event.attempts if a.consumer == consumer]
        assert mine == sorted(mine)
    times = [a.at for a in event.attempts]
    assert times == sorted(times)  # the whole story in time order
    errors = [a.error for a in event.attempts if a.consumer == "flaky"]
    assert errors == [
        "RuntimeError: flaky fails on purpose (call 1)",
        "RuntimeError: flaky fails on purpose (call 2)",
        None,
    ]
    assert all(a.handler_seconds is not None and a.handler_seconds >= 0 for a in event.attempts)
    now = {n.consumer: n for n in event.now}
    assert set(now) == {"flaky", "refuser"}
    assert now["flaky"].state == "handled"
    assert now["refuser"].state == "parked"
    assert now["refuser"].queue == f"{story.settings.prefix}.consumer.refuser.dead"
    assert now["refuser"].look == f"callback-fanout parked show refuser --job-id {JOB_ID}"
    assert now["refuser"].detail == "RuntimeError: refuser fails on purpose (call 2)"
    assert found.notes == [
        "no `archive` consumer configured: the received step comes from the delivery history only"
    ]


async def test_the_request_id_and_the_idempotency_key_find_the_same_story(
    story: Story, broker: BrokerClient
) -> None:
    by_job = await _traced(story, broker, JOB_ID)
    [event] = by_job.events
    assert event.received is not None
    assert event.received.request_id is not None
    assert event.idempotency_key is not None
    for other in (event.received.request_id, event.idempotency_key):
        [same] = (await _traced(story, broker, other)).events
        assert [(a.consumer, a.attempt) for a in same.attempts] == [
            (a.consumer, a.attempt) for a in event.attempts
        ]


def _args(settings: Settings, *argv: str) -> tuple[object, Settings]:
    dsn = settings.history_dsn
    history = ["--history-dsn", dsn.get_secret_value()] if dsn else []
    args = _build_parser().parse_args(
        [
            "trace",
            *argv,
            "--amqp-url",
            settings.broker_url,
            "--prefix",
            settings.prefix,
            "--no-entry-points",
            "--consumer",
            TRACED,
            *history,
        ]
    )
    return args, _settings_from(args)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_trace_prints_json_lines_when_piped_and_exits_0(story: Story) -> None:
    args, settings = _args(story.settings, JOB_ID)
    out = io.StringIO()
    assert await run_trace(args, settings, out) == 0  # type: ignore[arg-type]
    steps = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [s["step"] for s in steps] == ["received", "routed", *["attempt"] * 5, "now", "now"]
    attempts = [
        (s["consumer"], s["attempt"], s["outcome"]) for s in steps if s["step"] == "attempt"
    ]
    assert sorted(attempts) == [
        ("flaky", 1, "retried"),
        ("flaky", 2, "retried"),
        ("flaky", 3, "handled"),
        ("refuser", 1, "retried"),
        ("refuser", 2, "parked"),
    ]
    assert {s["consumer"]: s["state"] for s in steps if s["step"] == "now"} == {
        "flaky": "handled",
        "refuser": "parked",
    }
    assert all(s["job_id"] == JOB_ID for s in steps)


async def test_trace_prints_a_table_at_a_terminal(
    story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    args, settings = _args(story.settings, JOB_ID)
    out = _Terminal()
    assert await run_trace(args, settings, out) == 0  # type: ignore[arg-type]
    shown = out.getvalue()
    assert f"job {JOB_ID}" in shown
    for word in ("received", "routed", "TaskFinish.ImageOCR.Success", "retried", "handled"):
        assert word in shown, word
    assert f"look: callback-fanout parked show refuser --job-id {JOB_ID}" in shown
    assert not shown.lstrip().startswith("{")


async def test_nothing_found_exits_1_and_prints_nothing(
    story: Story, capsys: pytest.CaptureFixture[str]
) -> None:
    args, settings = _args(story.settings, "no-such-job")
    out = io.StringIO()
    assert await run_trace(args, settings, out) == 1  # type: ignore[arg-type]
    assert out.getvalue() == ""
    assert "nothing found for no-such-job" in capsys.readouterr().err


async def test_without_a_history_the_parking_queues_still_tell_and_the_gap_is_said(
    start_system: StartSystem, broker: BrokerClient, settings: Settings
) -> None:
    told = await _told(start_system, broker, settings)  # no history DSN
    found = await _traced(told, broker, JOB_ID)
    [event] = found.events
    assert event.attempts == []
    now = {n.consumer: n.state for n in event.now}
    assert now == {"refuser": "parked", "flaky": "unknown"}
    assert any(note.startswith("no delivery history (--history-dsn)") for note in found.notes)


async def test_the_received_step_comes_from_the_archive_when_one_runs(
    start_with: StartWith, broker: BrokerClient, settings: Settings, history_dsn: str
) -> None:
    table = "archived_" + settings.prefix.rsplit("-", maxsplit=1)[-1]
    options = Options(dsn=SecretStr(history_dsn), table=table, batch_wait_ms=0)
    archive = build(ConsumerSpec(name="archive", routes=tuple(ROUTES)), options)
    system = await start_with([archive])
    assert (await system.post((SEEDS / "ocr.1.xml").read_bytes())).status == 200
    source = ArchiveSource("archive", history_dsn, table)
    story = Story(system, Recorder("flaky", ROUTES), Recorder("refuser", ROUTES))

    async def archived() -> bool:
        return bool((await _traced(story, broker, JOB_ID, archives=[source])).events)

    await eventually(archived)
    found = await _traced(story, broker, JOB_ID, archives=[source])
    [event] = found.events
    assert event.received is not None
    assert event.received.source == "archive archive"
    assert event.received.source_address == "127.0.0.1"
    assert event.routing_key == "TaskFinish.ImageOCR.Success"
    assert event.attempts == []  # no history in these settings


async def test_rows_of_the_history_alone_tell_each_consumers_last_outcome(
    pg: asyncpg.Connection, history_dsn: str, prefix: str
) -> None:
    """Written as the workers write them (filtered: a consumer's filter refused the event)."""
    for statement in create_table_sql():
        await pg.execute(statement)
    now = datetime.now(UTC)
    rows = [
        (
            now + timedelta(seconds=i),
            prefix,
            consumer,
            outcome,
            attempt,
            "key-1",
            "job-1",
            "req-1",
            "TaskFinish.ImageOCR.Success",
            error,
            0.001,
            now,
            "10.0.0.9",
            "vendor",
            TRACE_ID,
        )
        for i, (consumer, outcome, attempt, error) in enumerate(
            [
                ("thumbs", "filtered", 1, None),
                ("billing", "timed_out", 1, "timed out after 5s"),
                ("audit", "duplicate", 1, None),
            ]
        )
    ]
    await pg.copy_records_to_table(TABLE, records=rows, columns=COLUMNS)
    consumers = [ConsumerRoutes(n, ("TaskFinish.#",)) for n in ("thumbs", "billing", "audit")]
    found = await trace(
        "req-1",
        prefix=prefix,
        consumers=consumers,
        history_dsn=history_dsn,
        tracing_ui_url="https://traces.example/trace/{trace_id}?from=fanout",
    )
    [event] = found.events
    assert event.traces == {TRACE_ID: f"https://traces.example/trace/{TRACE_ID}?from=fanout"}
    [traced] = [step for step in event.steps() if step["step"] == "traced"]
    assert traced["url"] == f"https://traces.example/trace/{TRACE_ID}?from=fanout"
    assert event.received is not None
    assert (event.received.source_address, event.received.token_name) == ("10.0.0.9", "vendor")
    assert {n.consumer: n.state for n in event.now} == {
        "thumbs": "filtered",
        "billing": "retrying",
        "audit": "duplicate",
    }
    assert "the parking queues were not looked in" in found.notes
    other = await trace("req-1", prefix=f"{prefix}-x", consumers=consumers, history_dsn=history_dsn)
    assert other.events == []  # another prefix's rows are not this deployment's
