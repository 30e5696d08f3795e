"""`consumers list|pause|resume` as an operator runs them, and `status` of a paused
consumer."""

from __future__ import annotations

import asyncio
import io
import json
import re

import aio_pika
import pytest
from pydantic import SecretStr

from callback_fanout.cli import _build_parser, _settings_from, _status
from callback_fanout.consumers import holds, pause
from shared.control import ask_exchange, control_stream
from shared.settings import Settings, settings_of
from tests.hold.conftest import StartWorker, Tally, queue_of, tallying
from tests.support.broker import BrokerClient
from tests.support.terminal import at_terminal, piped
from tests.support.waiting import eventually
from tests.test_cli_flags import env, offered
from workers import Breaker

pytestmark = pytest.mark.broker

REDIS_URL = "redis://127.0.0.1:6379/0"


def argv(settings: Settings, *words: str) -> list[str]:
    return [
        "consumers",
        *words,
        *("--amqp-url", settings.broker_url, "--prefix", settings.prefix),
        "--no-entry-points",
    ]


async def test_list_is_a_table_at_a_terminal_and_json_lines_when_piped(
    start_worker: StartWorker, settings: Settings, broker: BrokerClient
) -> None:
    shared = settings.model_copy(update={"redis_url": SecretStr(REDIS_URL)})
    consumers = [
        tallying("plain", Tally()),
        tallying("limited", Tally(), rate_limit=50),
        tallying("guarded", Tally(), breaker=Breaker(failures=5, cool_down=10)),
    ]
    await start_worker(consumers, settings_=shared)
    await start_worker(consumers, settings_=shared)
    paused = await asyncio.to_thread(piped, argv(settings, "pause", "plain", "--for", "10m"))
    assert paused.status == 0
    assert re.fullmatch(r"paused plain until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n", paused.out)

    listed = await asyncio.to_thread(piped, argv(settings, "list"))
    assert listed.status == 0
    rows = {row["consumer"]: row for row in map(json.loads, listed.out.splitlines())}
    assert set(rows) == {"plain", "limited", "guarded"}
    assert rows["plain"]["state"] == "paused"
    assert rows["plain"]["paused_by"] == "cli"
    assert rows["plain"]["consumers"] == 0
    assert rows["limited"]["state"] == "running"
    assert (rows["limited"]["rate_limit"], rows["limited"]["rate_scope"]) == (50.0, "global")
    assert rows["limited"]["consumers"] == rows["limited"]["workers"] == 2
    assert rows["guarded"]["breakers"] == {"closed": 2}

    shown = await asyncio.to_thread(at_terminal, argv(settings, "list"))
    assert shown.status == 0
    plain = re.sub(r"\x1b\[[0-9;]*m", "", shown.out)
    table = {line.split()[0]: line.split()[1:] for line in plain.splitlines() if line.strip()}
    #                  state ready consumers workers rate-limit breakers paused
    assert table["limited"] == ["running", "0", "2", "2", "50/s", "global", "-", "-"]
    assert table["guarded"] == ["running", "0", "2", "2", "-", "2", "closed", "-"]
    assert table["plain"][:4] == ["paused", "0", "0", "2"]
    assert " ".join(table["plain"][4:]).startswith("- - by cli, 9m")

    resumed = await asyncio.to_thread(piped, argv(settings, "resume", "plain"))
    assert (resumed.status, resumed.out) == (0, "resumed plain\n")


async def test_status_shows_a_paused_consumer_as_paused_and_healthy(
    start_worker: StartWorker, settings: Settings, broker: BrokerClient
) -> None:
    worker = await start_worker([tallying("audit", Tally())])
    await pause(broker.connection, broker.topology, "audit")
    await eventually(lambda: worker.runners[0].hold.paused is not None)
    await eventually(lambda: _consumers(broker, queue_of(settings, "audit"), 0))
    args = _build_parser().parse_args(
        [
            "status",
            *("--amqp-url", settings.broker_url, "--prefix", settings.prefix),
            *("--management-url", "off", "--window", "0", "--no-entry-points"),
            *("--retry-delays", ",".join(str(d) for d in settings.retry_delays)),
        ]
    )
    out = io.StringIO()
    code = await _status(args, _settings_from(args), out)
    document = json.loads(out.getvalue())
    [row] = [q for q in document["queues"] if q["consumer"] == "audit"]
    assert (row["consumers"], row["hold"], row["problems"]) == (0, "paused", [])
    # only the queues of the roles this test does not run (raw, ...) make it exit 1
    assert code == 1
    assert [p for p in document["problems"] if "consumer" in p] == []
    assert document["problems"]


def test_the_consumers_command_offers_the_settings_it_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for action in ("list", "pause", "resume"):
        assert offered(capsys, "consumers", action) == env(*settings_of("consumers"))
    assert env("amqp_url", "prefix", "consumers") <= env(*settings_of("consumers"))


def test_pause_refuses_a_bad_duration_and_an_unknown_consumer(settings: Settings) -> None:
    bad = piped(argv(settings, "pause", "plain", "--for", "soon"))
    assert bad.status == 2
    assert "not a duration: 'soon'" in bad.err
    unknown = piped(argv(settings, "pause", "nobody"))
    assert unknown.status == 1
    assert unknown.err.startswith("callback-fanout: no consumer 'nobody' under prefix")


async def _consumers(broker: BrokerClient, queue: str, n: int) -> bool:
    channel = await broker.connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.consumer_count == n
    finally:
        await channel.close()


async def test_list_and_status_create_nothing_where_no_worker_ever_ran(
    settings: Settings, broker: BrokerClient
) -> None:
    listed = await asyncio.to_thread(piped, argv(settings, "list"))
    assert (listed.status, listed.out) == (0, "")
    held = await holds(broker.connection, settings.prefix)
    assert held == {}
    stream, exchange = control_stream(settings.prefix), ask_exchange(settings.prefix)
    channel = await broker.connection.channel()
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
        await channel.declare_queue(stream, passive=True)
    channel = await broker.connection.channel()
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
        await channel.declare_exchange(exchange, passive=True)
