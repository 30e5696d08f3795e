"""`status` with and without the RabbitMQ management API.

The shared test broker runs without the management plugin, so the suite checks what `status`
does when the API does not answer, and reads a real answer of the API captured from a
RabbitMQ 3.10 with the plugin (tests/fixtures/management/queues.json: three queues of a
system under load, a consumer 8 messages/s behind). ``STATUS_MANAGEMENT_AMQP_URL`` and
``STATUS_MANAGEMENT_URL`` point test_status_management_live.py at a broker that has it.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from callback_fanout.cli import _build_parser, _settings_from, _status
from callback_fanout.management import Management, QueueStats, management_for
from callback_fanout.status import ConsumerRef, consumer_groups
from shared.settings import Settings
from shared.topology import Topology
from tests.conftest import StartSystem
from tests.support.broker import BrokerClient
from tests.support.system import Recorder

CAPTURED = Path(__file__).parent / "fixtures" / "management" / "queues.json"


def test_the_api_answer_gives_unacked_consumers_and_rates() -> None:
    answer = json.loads(CAPTURED.read_text())
    stats = {s.name: s for s in (QueueStats.from_api(item) for item in answer)}
    assert stats["callbacks.consumer.slow-recorder"] == QueueStats(
        "callbacks.consumer.slow-recorder", 238, 4, 1, in_per_s=0.0, out_per_s=8.0
    )
    # A queue that never saw a message has no rates yet: unknown, not 0.
    delay = stats["callbacks.consumer.slow-recorder.delay.5000ms"]
    assert (delay.ready, delay.in_per_s, delay.out_per_s) == (0, None, None)


def test_listed_queues_add_consumers_nobody_configured_with_their_delay_queues() -> None:
    topology = Topology("callbacks")
    listed = [
        "callbacks.raw",
        "callbacks.consumer.audit",
        "callbacks.consumer.audit.dead",
        "callbacks.consumer.audit.delay.5000ms",
        "callbacks.consumer.thumbnails.delay.1000ms",
        "callbacks.consumer.Not.A.Consumer",
        "other.consumer.audit",
    ]
    groups = consumer_groups(topology, [ConsumerRef("log", (0.2,))], listed)
    assert [(g.name, g.main, g.dead, sorted(g.delays)) for g in groups] == [
        (
            "audit",
            "callbacks.consumer.audit",
            "callbacks.consumer.audit.dead",
            ["callbacks.consumer.audit.delay.5000ms"],
        ),
        (
            "log",
            "callbacks.consumer.log",
            "callbacks.consumer.log.dead",
            ["callbacks.consumer.log.delay.200ms"],
        ),
        (
            "thumbnails",
            "callbacks.consumer.thumbnails",
            "callbacks.consumer.thumbnails.dead",
            ["callbacks.consumer.thumbnails.delay.1000ms"],
        ),
    ]


def test_auto_asks_the_broker_host_on_15672_with_its_credentials_and_vhost() -> None:
    auto = management_for(Settings.load(amqp_url="amqp://ops:p%40ss@mq.internal:5672/prod"))
    assert auto == Management("http://ops:p%40ss@mq.internal:15672/", "prod")
    assert auto.masked_url == "http://ops:***@mq.internal:15672/"
    tls = management_for(Settings.load(amqp_url="amqps://u:p@mq:5671/"))
    assert tls == Management("https://u:p@mq:15672/", "/")
    assert management_for(Settings.load(management_url="off")) is None
    chosen = management_for(Settings.load(management_url="http://a:b@admin:8080/"))
    assert chosen == Management("http://a:b@admin:8080/", "/")


def test_a_management_url_that_is_not_http_is_refused() -> None:
    from shared.errors import ConfigError

    with pytest.raises(ConfigError, match="management_url must be auto, off or an http"):
        Settings.load(management_url="amqp://guest:guest@localhost:5672/")


async def status_document(settings: Settings, *extra: str) -> tuple[int, dict[str, Any]]:
    argv = [
        "status",
        *("--amqp-url", settings.broker_url, "--prefix", settings.prefix),
        *("--consumer", "log", "--no-entry-points", "--window", "0"),
        *("--retry-delays", ",".join(str(d) for d in settings.retry_delays)),
        *extra,
    ]
    args = _build_parser().parse_args(argv)
    out = io.StringIO()
    code = await _status(args, _settings_from(args), out)
    return code, json.loads(out.getvalue())


@pytest.mark.broker
async def test_without_an_answering_api_status_says_so_and_works_on_amqp_alone(
    start_system: StartSystem, settings: Settings
) -> None:
    await start_system([Recorder("log", ["#"])])
    code, document = await status_document(
        settings, "--management-url", "http://guest:secret-pw@127.0.0.1:9/"
    )
    assert code == 0
    assert document["management_api"] is None
    [note] = document["notes"]
    assert note.startswith(
        "AMQP only (the management API at http://guest:***@127.0.0.1:9/ did not answer)"
    )
    assert "secret-pw" not in json.dumps(document)
    assert [q["unacked"] for q in document["queues"]] == [None] * 4


@pytest.fixture
async def captured_api(settings: Settings) -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A local management API answering with the captured queues, renamed to the test's
    prefix; (its URL, the requests it got)."""
    answer = CAPTURED.read_text().replace('"callbacks.', f'"{settings.prefix}.')
    asked: list[web.Request] = []

    async def queues(request: web.Request) -> web.Response:
        asked.append(request)
        return web.Response(text=answer, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/queues/{vhost}", queues)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    yield f"http://watcher:s3cret@127.0.0.1:{port}/", asked
    await runner.cleanup()


@pytest.mark.broker
async def test_with_the_captured_api_answer_status_shows_its_unacked_rates_and_consumers(
    start_system: StartSystem,
    settings: Settings,
    broker: BrokerClient,
    captured_api: tuple[str, list[web.Request]],
) -> None:
    """Always on: the API's answer served locally, the queues real on the shared broker."""
    url, asked = captured_api
    slow = Recorder("slow-recorder", ["TaskFinish.#"], retry_delays=[5.0])
    await start_system([Recorder("log", ["#"]), slow], ingress=False)
    code, document = await status_document(settings, "--management-url", url)

    p = settings.prefix
    assert [
        (
            q["queue"],
            q["ready"],
            q["unacked"],
            q["consumers"],
            q["retrying"],
            q["parked"],
            q["in_per_s"],
            q["out_per_s"],
            q["problems"],
        )
        for q in document["queues"]
    ] == [
        # ready and consumers come from AMQP (the real queues); unacked and the rates from
        # the API: the captured slow-recorder had 4 unacked, 0 in and 8 out per second.
        (f"{p}.raw", 0, None, 1, None, None, None, None, []),
        (f"{p}.consumer.log", 0, None, 1, 0, 0, None, None, []),
        (f"{p}.consumer.slow-recorder", 0, 4, 1, 0, 0, 0.0, 8.0, []),
        (f"{p}.unparsed", 0, 0, 0, None, 0, 0.0, None, []),
        (f"{p}.unrouted", 0, None, 0, None, 0, None, None, []),
    ]
    assert code == 0
    assert document["management_api"] == url.replace("s3cret", "***")
    assert document["notes"] == []
    # the broker URL's vhost ("/"), and the credentials of the URL (watcher:s3cret)
    assert {(r.raw_path, r.headers["Authorization"]) for r in asked} == {
        ("/api/queues/%2F", "Basic d2F0Y2hlcjpzM2NyZXQ=")
    }
